import { describe, expect, test } from 'vitest'
import { compareMetric } from './ab.ts'
import type { BenchMetric } from './result.ts'

// A deterministic noisy sample: the rate plus up to ±5% of it.
function samples(rate: number, n: number, seed: number): number[] {
  let s = seed
  return Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2 ** 31
    return rate * (1 + ((s / 2 ** 31) - 0.5) / 10)
  })
}
const metric = (xs: number[], higherIsBetter = true): BenchMetric => ({
  benchmark: 'memslot_churn', metric: 'rate', unit: 'pairs/s', higherIsBetter, x: 'slots', params: { slots: 64 }, samples: xs,
})

describe('A/B verdicts', () => {
  test('a planted 30% slowdown is a regression', () => {
    const r = compareMetric(metric(samples(1000, 10, 1)), metric(samples(700, 10, 2)))
    expect(r.verdict).toBe('regression')
    expect(r.change).toBeCloseTo(-0.3, 1)
    expect(r.p).toBeLessThan(0.01)
  })

  test('two runs of the same distribution are unchanged', () => {
    expect(compareMetric(metric(samples(1000, 10, 1)), metric(samples(1000, 10, 7))).verdict).toBe('unchanged')
  })

  test('significant but below the threshold is unchanged; a big change with few samples is not significant', () => {
    expect(compareMetric(metric(samples(1000, 40, 1).map((v) => v * 1.0)), metric(samples(1000, 40, 1).map((v) => v * 0.95))).verdict).toBe('unchanged')
    expect(compareMetric(metric([1000, 1010]), metric([600, 610])).verdict).toBe('unchanged')
  })

  test('direction follows higherIsBetter', () => {
    expect(compareMetric(metric(samples(1000, 10, 1), false), metric(samples(700, 10, 2), false)).verdict).toBe('improvement')
  })
})
