// Known values from scipy 1.17 (scipy.stats.mannwhitneyu(x, y, method="asymptotic"), two-sided,
// continuity correction on), including its documentation's example and samples with ties.

import { describe, expect, test } from 'vitest'
import { erfc, mannWhitneyU, rank } from './mann-whitney.ts'

describe('Mann-Whitney U', () => {
  test.each([
    [[19, 22, 16, 29, 24], [20, 11, 17, 12], 17, 0.11134688653314041],
    [[1, 2, 2, 3, 3, 3, 4], [2, 3, 4, 4, 5, 5, 6, 6], 8.5, 0.025144761173357368],
    [[100, 101, 99, 102, 98, 100, 103, 97, 101, 99], [70, 70.7, 69.3, 71.4, 68.6, 70, 72.1, 67.9, 70.7, 69.3], 100, 0.00017661101166893502],
    [[1.5, 2.5, 3.5, 10, 11, 12, 13, 14], [4, 5, 6, 7, 8, 9, 20, 30, 40], 30, 0.5966405346973952],
    [[5, 5, 5], [5, 5, 5], 4.5, 1],
  ])('%j vs %j: U = %d, p = %d', (x, y, u, p) => {
    const r = mannWhitneyU(x, y)
    expect(r.u1).toBe(u)
    expect(r.p).toBeCloseTo(p, 12)
  })

  test('ties share the average rank', () => {
    expect(rank([3, 1, 3, 2])).toEqual({ ranks: [3.5, 1, 3.5, 2], tieTerm: 6 })
  })

  test('erfc against scipy.special.erfc', () => {
    const known: [number, number][] = [[0.1, 0.8875370839817152], [1, 0.15729920705028516], [3, 2.2090496998585445e-5], [5, 1.5374597944280347e-12], [-1, 1.8427007929497148]]
    for (const [x, v] of known) expect(Math.abs(erfc(x) - v) / v).toBeLessThan(1e-13)
  })
})
