// The pages of one memory object (an anonymous mapping, a shmem/memfd file, a guest_memfd file): sparse,
// 4 KiB each, allocated on first write. A page never written reads as zeroes, as a fresh anonymous or
// file page does, so mapping tens of GiB with MAP_NORESERVE costs nothing until it is touched.
//
// Offsets are byte offsets into the object (bigint, as file offsets are); page indices are numbers
// (an object of up to 2^63 bytes has fewer than 2^53 pages).

import { SparsePageMap } from './sparse-page-map.ts'

export const PAGE_SHIFT = 12
export const PAGE_SIZE = 1 << PAGE_SHIFT
const PAGE = BigInt(PAGE_SIZE)
const SHIFT = BigInt(PAGE_SHIFT)
const IN_PAGE = PAGE - 1n

/** The page index holding byte `offset`. */
export function pageIndex(offset: bigint): number {
  return Number(offset >> SHIFT)
}

export function isPageAligned(value: bigint): boolean {
  return (value & (PAGE - 1n)) === 0n
}

/** `value` rounded up to a whole number of pages. */
export function pageAlignUp(value: bigint): bigint {
  return (value + PAGE - 1n) & ~(PAGE - 1n)
}

/** Calls `visit(index, startInPage, length, done)` for each page piece of [offset, offset+length). */
function forEachPiece(
  offset: bigint,
  length: bigint,
  visit: (index: number, start: number, length: number, done: number) => boolean | void,
): void {
  let done = 0n
  while (done < length) {
    const at = offset + done
    const start = Number(at & (PAGE - 1n))
    const piece = Math.min(PAGE_SIZE - start, Number(length - done > PAGE ? PAGE : length - done))
    if (visit(pageIndex(at), start, piece, Number(done)) === true) return
    done += BigInt(piece)
  }
}

/** Pages per slab (64 KiB): below malloc's mmap threshold, so slabs come from the heap, not fresh mappings. */
const SLAB_PAGES = 16
const SLAB_SHIFT = 4
/** The most freed slabs kept for reuse by every store of the process (256 MiB). */
const POOL_MAX_SLABS = 4096

/**
 * Slabs given back by released stores, for the next store to reuse. Memory the process already faulted
 * in costs a fill to reuse; fresh memory costs a host page fault per 4 KiB on first touch, which on this
 * project's PVM hosts is several times the whole rest of a demand-paging step (measured: 0.35 M fresh
 * pages/s against 4.7 M reused pages/s filled). Reused slabs hold old data: each page is zeroed when it
 * is handed out, unless the caller overwrites all of it.
 */
const slabPool: Uint8Array[] = []

/**
 * Where a page lives: slot `s` is page `s & (SLAB_PAGES - 1)` of slab `s >> SLAB_SHIFT`. A store's
 * first new slabs are smaller (1, 2, 4, 8 pages) so that a store of a few pages holds little.
 */
type Slot = number

/** The byte offset of `slot`'s page in its slab. */
const pageStart = (slot: Slot): number => (slot & (SLAB_PAGES - 1)) * PAGE_SIZE

export class PageStore {
  /** Page index -> slot. Numbers, not per-page views: a typed-array view costs more than the page's fill. */
  private readonly slots = new SparsePageMap()
  private readonly slabs: Uint8Array[] = []
  /** Slots freed by discard(), reused before new ones. */
  private readonly freeSlots: Slot[] = []
  /** Pages of the newest slab handed out. */
  private slabUsed = 0
  /** Whether the newest slab came from the pool (its pages hold another store's data). */
  private newestFromPool = false

  /** How many pages hold data (for tests and accounting). */
  get residentPages(): number {
    return this.slots.size
  }

  hasPage(index: number): boolean {
    return this.slots.has(index)
  }

  /** The slab holding `slot`. */
  private slabOf(slot: Slot): Uint8Array {
    return this.slabs[slot >>> SLAB_SHIFT]!
  }

  /**
   * The slot of page `index`, allocated if absent. A new page reads as zeroes unless `overwrite` says
   * the caller is about to write every byte of it (then zeroing it first would be wasted).
   */
  private slot(index: number, overwrite = false): Slot {
    const existing = this.slots.get(index)
    if (existing !== undefined) return existing
    let slot = this.freeSlots.pop()
    let dirty = true // a freed slot holds its old page
    if (slot === undefined) {
      const newest = this.slabs[this.slabs.length - 1]
      if (newest === undefined || this.slabUsed * PAGE_SIZE === newest.length) {
        // A pooled slab when there is one (its memory is the process's already); else a new one, small
        // for a store's first pages.
        const pooled = slabPool.pop()
        const pages = this.slabs.length < SLAB_SHIFT ? 1 << this.slabs.length : SLAB_PAGES
        this.slabs.push(pooled ?? new Uint8Array(pages * PAGE_SIZE))
        this.newestFromPool = pooled !== undefined
        this.slabUsed = 0
      }
      slot = ((this.slabs.length - 1) << SLAB_SHIFT) | this.slabUsed++
      dirty = this.newestFromPool
    }
    if (dirty && !overwrite) this.slabOf(slot).fill(0, pageStart(slot), pageStart(slot) + PAGE_SIZE)
    this.slots.set(index, slot)
    return slot
  }

  /**
   * The object is gone (its last mapping unmapped, its last fd closed): its slabs go to the pool for the
   * next store. The store is empty afterwards and may be used again.
   */
  release(): void {
    for (const slab of this.slabs) {
      if (slab.length === SLAB_PAGES * PAGE_SIZE && slabPool.length < POOL_MAX_SLABS) slabPool.push(slab)
    }
    this.slabs.length = 0
    this.slots.clear()
    this.freeSlots.length = 0
    this.slabUsed = 0
  }

  read(offset: bigint, length: number): Uint8Array {
    const start = Number(offset & IN_PAGE)
    if (start + length <= PAGE_SIZE) {
      // Within one page (every guest access, a bitmap word): a copy, no piece walk.
      const slot = this.slots.get(pageIndex(offset))
      if (slot === undefined) return new Uint8Array(length)
      const at = pageStart(slot) + start
      return this.slabOf(slot).slice(at, at + length)
    }
    const out = new Uint8Array(length)
    forEachPiece(offset, BigInt(length), (index, start, len, done) => {
      const slot = this.slots.get(index)
      if (slot !== undefined) out.set(this.slabOf(slot).subarray(pageStart(slot) + start, pageStart(slot) + start + len), done)
    })
    return out
  }

  write(offset: bigint, data: Uint8Array): void {
    const start = Number(offset & IN_PAGE)
    if (data.length > 0 && start + data.length <= PAGE_SIZE) {
      // Within one page (every guest access): no piece walk.
      const slot = this.slot(pageIndex(offset), data.length === PAGE_SIZE)
      this.slabOf(slot).set(data, pageStart(slot) + start)
      return
    }
    forEachPiece(offset, BigInt(data.length), (index, start, len, done) => {
      const slot = this.slot(index, len === PAGE_SIZE)
      this.slabOf(slot).set(data.subarray(done, done + len), pageStart(slot) + start)
    })
  }

  fill(offset: bigint, length: bigint, byte: number): void {
    if (byte === 0) {
      // Zeroing touches only pages that exist: the others already read as zeroes.
      this.visitResident(offset, length, (slab, start, len) => slab.fill(0, start, start + len))
      return
    }
    const start = Number(offset & IN_PAGE)
    if (length > 0n && start + Number(length) <= PAGE_SIZE) {
      // Within one page (a resolved 4 KiB unit): no piece walk.
      this.fillPiece(pageIndex(offset), start, Number(length), byte)
      return
    }
    forEachPiece(offset, length, (index, start, len) => this.fillPiece(index, start, len, byte))
  }

  /** Fills `count` whole pages from page `index` with `byte` (UFFDIO_COPY of a uniform page: no bigint offsets). */
  fillPages(index: number, count: number, byte: number): void {
    if (byte === 0) {
      this.fill(BigInt(index) << SHIFT, BigInt(count) << SHIFT, 0)
      return
    }
    for (let i = 0; i < count; i++) this.fillPiece(index + i, 0, PAGE_SIZE, byte)
  }

  private fillPiece(index: number, start: number, length: number, byte: number): void {
    const slot = this.slot(index, length === PAGE_SIZE)
    const at = pageStart(slot) + start
    this.slabOf(slot).fill(byte, at, at + length)
  }

  /** The offset from `offset` of the first byte in [offset, offset+length) that is not `byte`, or -1n. */
  findMismatch(offset: bigint, length: bigint, byte: number): bigint {
    if (byte === 0) {
      let first = -1n
      this.visitResident(offset, length, (slab, start, len, at) => {
        const i = slab.subarray(start, start + len).findIndex((b) => b !== 0)
        if (i >= 0 && (first < 0n || at + BigInt(i) < first)) first = at + BigInt(i)
      })
      return first
    }
    let found = -1n
    forEachPiece(offset, length, (index, start, len, done) => {
      const slot = this.slots.get(index)
      const i = slot === undefined ? 0 : this.slabOf(slot).subarray(pageStart(slot) + start, pageStart(slot) + start + len).findIndex((b) => b !== byte)
      if (i < 0) return false
      found = BigInt(done + i)
      return true
    })
    return found
  }

  /** Drops the pages wholly inside [offset, offset+length) (their slots are reused); partial pages are zeroed. */
  discard(offset: bigint, length: bigint): void {
    this.visitResident(offset, length, (slab, start, len, _at, index) => {
      if (len < PAGE_SIZE) {
        slab.fill(0, start, start + len)
        return
      }
      this.freeSlots.push(this.slots.get(index)!)
      this.slots.delete(index)
    })
  }

  /**
   * Visits the resident pages that overlap [offset, offset+length), in no particular order: `slab` and
   * `start` locate the piece's first byte in its slab, `at` is the piece's distance from `offset`.
   * Walks whichever is smaller, the range or the store.
   */
  private visitResident(
    offset: bigint,
    length: bigint,
    visit: (slab: Uint8Array, start: number, length: number, at: bigint, index: number) => void,
  ): void {
    if (length <= 0n) return
    const end = offset + length
    const first = pageIndex(offset)
    const last = pageIndex(end - 1n)
    const piece = (index: number, slot: Slot): void => {
      const pageAt = BigInt(index) << SHIFT
      const from = offset > pageAt ? offset : pageAt
      const to = end < pageAt + PAGE ? end : pageAt + PAGE
      visit(this.slabOf(slot), pageStart(slot) + Number(from - pageAt), Number(to - from), from - offset, index)
    }
    if (last - first + 1 <= this.slots.size) {
      for (let index = first; index <= last; index++) {
        const slot = this.slots.get(index)
        if (slot !== undefined) piece(index, slot)
      }
      return
    }
    for (const [index, slot] of this.slots.entries()) {
      if (index >= first && index <= last) piece(index, slot)
    }
  }
}
