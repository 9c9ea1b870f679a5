// RangeSet against the obvious model (a Set of numbers): any sequence of adds and deletes leaves the
// same members, and the ranges stay sorted, disjoint and merged.

import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import { RangeSet } from './range-set.ts'

const op = fc.record({ add: fc.boolean(), from: fc.integer({ min: 0, max: 60 }), len: fc.integer({ min: 0, max: 12 }) })

describe('RangeSet', () => {
  test('property: members, firstMissing and the ranges agree with a Set', () => {
    fc.assert(fc.property(fc.array(op, { maxLength: 40 }), fc.integer({ min: 0, max: 70 }), fc.integer({ min: 0, max: 20 }), (ops, qFrom, qLen) => {
      const set = new RangeSet()
      const model = new Set<number>()
      for (const o of ops) {
        if (o.add) set.add(o.from, o.from + o.len)
        else set.delete(o.from, o.from + o.len)
        for (let n = o.from; n < o.from + o.len; n++) o.add ? model.add(n) : model.delete(n)
      }
      for (let n = 0; n < 80; n++) expect(set.has(n)).toBe(model.has(n))
      let missing: number | undefined
      for (let n = qFrom; n < qFrom + qLen && missing === undefined; n++) if (!model.has(n)) missing = n
      expect(set.firstMissing(qFrom, qFrom + qLen)).toBe(missing)
      const ranges = set.ranges()
      for (const [i, [lo, hi]] of ranges.entries()) {
        expect(lo).toBeLessThan(hi)
        if (i > 0) expect(lo).toBeGreaterThan(ranges[i - 1]![1]) // disjoint and never touching
      }
    }))
  })

  test('a sequential pass merges into one range', () => {
    const set = new RangeSet()
    for (let n = 0; n < 1000; n++) set.add(n, n + 1)
    expect(set.ranges()).toEqual([[0, 1000]])
    set.delete(10, 20)
    expect(set.ranges()).toEqual([[0, 10], [20, 1000]])
  })
})
