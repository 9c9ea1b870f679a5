// PageStore against the plainest possible reference (a Map of whole 4 KiB arrays): the slab slots, the
// page map and the process-wide pool of released slabs must never show one store's bytes in another, nor a
// discarded page's old bytes.

import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import { PAGE_SIZE, PageStore } from './page-store.ts'
import { SparsePageMap } from './sparse-page-map.ts'

/** Pages 0..PAGES-1 and a far one: enough to cross slabs (16 pages) and page-map runs (512 pages). */
const PAGES = 40
const FAR = 2 ** 40

class Reference {
  readonly pages = new Map<number, Uint8Array>()
  page(i: number): Uint8Array {
    return this.pages.get(i) ?? new Uint8Array(PAGE_SIZE)
  }
  /** Calls `piece(page, start, end)` for each page piece of [offset, offset+length). */
  private pieces(offset: number, length: number, piece: (page: number, start: number, end: number, done: number) => void): void {
    for (let at = offset; at < offset + length; ) {
      const page = Math.floor(at / PAGE_SIZE)
      const end = Math.min((page + 1) * PAGE_SIZE, offset + length)
      piece(page, at - page * PAGE_SIZE, end - page * PAGE_SIZE, at - offset)
      at = end
    }
  }
  write(offset: number, data: Uint8Array): void {
    this.pieces(offset, data.length, (page, start, end, done) => {
      const p = this.page(page)
      p.set(data.subarray(done, done + end - start), start)
      this.pages.set(page, p)
    })
  }
  discard(offset: number, length: number): void {
    this.pieces(offset, length, (page, start, end) => {
      if (end - start === PAGE_SIZE) this.pages.delete(page)
      else this.pages.get(page)?.fill(0, start, end)
    })
  }
}

const pageArb = fc.oneof(fc.integer({ min: 0, max: PAGES - 1 }), fc.constant(FAR))
const op = fc.oneof(
  fc.record({ kind: fc.constant('write' as const), page: pageArb, start: fc.integer({ min: 0, max: PAGE_SIZE - 1 }), length: fc.integer({ min: 1, max: 2 * PAGE_SIZE }), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('fillPages' as const), page: pageArb, count: fc.integer({ min: 1, max: 3 }), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('discard' as const), page: pageArb, start: fc.integer({ min: 0, max: PAGE_SIZE - 1 }), length: fc.integer({ min: 1, max: 3 * PAGE_SIZE }) }),
  fc.record({ kind: fc.constant('release' as const) }),
)

describe('PageStore', () => {
  test('agrees with a Map of whole pages through writes, fills, discards and releases', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
        // A second store shares the pool: after a release its slabs may back `store`'s new pages.
        const store = new PageStore()
        const other = new PageStore()
        let ref = new Reference()
        for (const o of ops) {
          if (o.kind === 'release') {
            store.release()
            ref = new Reference()
            other.fillPages(0, 20, 0xee) // dirties pooled slabs before the store takes them back
            other.release()
            continue
          }
          const offset = o.page * PAGE_SIZE + ('start' in o ? o.start : 0)
          if (o.kind === 'write') {
            const data = new Uint8Array(o.length).fill(o.byte)
            store.write(BigInt(offset), data)
            ref.write(offset, data)
          } else if (o.kind === 'fillPages') {
            store.fillPages(o.page, o.count, o.byte)
            // Filling with zeroes allocates nothing: only pages that exist are zeroed.
            for (let p = o.page; p < o.page + o.count; p++) {
              if (o.byte !== 0 || ref.pages.has(p)) ref.write(p * PAGE_SIZE, new Uint8Array(PAGE_SIZE).fill(o.byte))
            }
          } else {
            store.discard(BigInt(offset), BigInt(o.length))
            ref.discard(offset, o.length)
          }
        }
        for (const page of [...Array.from({ length: PAGES + 3 }, (_, i) => i), FAR, FAR + 1]) {
          const got = Buffer.from(store.read(BigInt(page * PAGE_SIZE), PAGE_SIZE))
          const want = Buffer.from(ref.page(page))
          if (!got.equals(want)) expect.fail(`page ${page}: byte ${got.findIndex((b, i) => b !== want[i])} differs`)
        }
        expect(store.residentPages).toBe(ref.pages.size)
      }),
      { numRuns: 200 },
    )
  })

  test('a page taken from a released store reads as zeroes', () => {
    const dirty = new PageStore()
    dirty.fillPages(0, 64, 0x5a)
    dirty.release()
    expect(dirty.residentPages).toBe(0)
    const fresh = new PageStore()
    fresh.write(BigInt(63 * PAGE_SIZE + 100), Uint8Array.of(1))
    for (let page = 0; page < 64; page++) {
      const bytes = fresh.read(BigInt(page * PAGE_SIZE), PAGE_SIZE)
      expect(bytes.filter((b) => b !== 0).length, `page ${page}`).toBe(page === 63 ? 1 : 0)
    }
    // A write of a new page in a slab that came from the pool: the rest of that page is zero too.
    const again = new PageStore()
    for (let page = 0; page < 40; page++) again.write(BigInt(page * PAGE_SIZE + 8), Uint8Array.of(7))
    const bytes = again.read(0n, 40 * PAGE_SIZE)
    expect(bytes.filter((b) => b !== 0).length).toBe(40)
  })
})

describe('SparsePageMap', () => {
  test('counts, deletes and iterates pages across runs and far indices', () => {
    const m = new SparsePageMap()
    const indices = [0, 511, 512, 2 ** 52, 2 ** 52 + 1]
    indices.forEach((i, n) => m.set(i, n))
    m.set(0, 9)
    expect(m.size).toBe(5)
    expect(m.get(0)).toBe(9)
    expect(m.get(2 ** 52 + 1)).toBe(4)
    expect(m.get(1)).toBeUndefined()
    m.delete(511)
    m.delete(511)
    expect(m.size).toBe(4)
    expect([...m.keys()].sort((a, b) => a - b)).toEqual([0, 512, 2 ** 52, 2 ** 52 + 1])
    expect(() => m.set(3, -1)).toThrow(RangeError)
    m.clear()
    expect(m.size).toBe(0)
  })
})
