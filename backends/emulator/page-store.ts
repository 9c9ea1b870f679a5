// The pages of one memory object (an anonymous mapping, a shmem/memfd file, a guest_memfd file): sparse,
// 4 KiB each, allocated on first write. A page never written reads as zeroes, as a fresh anonymous or
// file page does, so mapping tens of GiB with MAP_NORESERVE costs nothing until it is touched.
//
// Offsets are byte offsets into the object (bigint, as file offsets are); page indices are numbers
// (an object of up to 2^63 bytes has fewer than 2^53 pages).

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

/**
 * The most pages one slab of a PageStore holds: 64 KiB, below malloc's mmap threshold, so freed slabs
 * come back from the heap instead of fresh kernel pages.
 */
const MAX_SLAB_PAGES = 16

export class PageStore {
  private readonly pages = new Map<number, Uint8Array>()

  /** How many pages hold data (for tests and accounting). */
  get residentPages(): number {
    return this.pages.size
  }

  hasPage(index: number): boolean {
    return this.pages.has(index)
  }

  /** The slab new pages are carved from, and how many of its pages are handed out. */
  private slab: ArrayBuffer | null = null
  private slabUsed = 0

  private page(index: number): Uint8Array {
    let page = this.pages.get(index)
    if (page === undefined) {
      // Pages come from slabs of fresh (zeroed) pages: one backing store per slab instead of one per
      // page keeps demand paging's first touches cheap. A slab's pages are handed out once, so a new
      // page is always zero; the slab is freed once none of its pages is referenced any more.
      if (this.slab === null || this.slabUsed * PAGE_SIZE === this.slab.byteLength) {
        // Slabs grow with the store (1, 2, 4, ... pages, at most MAX_SLAB_PAGES), so a store with a
        // few pages holds little and a large one few backing stores.
        const pages = Math.min(MAX_SLAB_PAGES, Math.max(1, this.slab === null ? 1 : (this.slab.byteLength / PAGE_SIZE) * 2))
        this.slab = new ArrayBuffer(pages * PAGE_SIZE)
        this.slabUsed = 0
      }
      page = new Uint8Array(this.slab, this.slabUsed++ * PAGE_SIZE, PAGE_SIZE)
      this.pages.set(index, page)
    }
    return page
  }

  read(offset: bigint, length: number): Uint8Array {
    const start = Number(offset & IN_PAGE)
    if (start + length <= PAGE_SIZE) {
      // Within one page (every guest access, a bitmap word): a copy, no piece walk.
      const page = this.pages.get(pageIndex(offset))
      return page === undefined ? new Uint8Array(length) : page.slice(start, start + length)
    }
    const out = new Uint8Array(length)
    forEachPiece(offset, BigInt(length), (index, start, len, done) => {
      const page = this.pages.get(index)
      if (page !== undefined) out.set(page.subarray(start, start + len), done)
    })
    return out
  }

  write(offset: bigint, data: Uint8Array): void {
    const start = Number(offset & IN_PAGE)
    if (data.length > 0 && start + data.length <= PAGE_SIZE) {
      // Within one page (every guest access): no piece walk.
      this.page(pageIndex(offset)).set(data, start)
      return
    }
    forEachPiece(offset, BigInt(data.length), (index, start, len, done) => {
      this.page(index).set(data.subarray(done, done + len), start)
    })
  }

  fill(offset: bigint, length: bigint, byte: number): void {
    const start = Number(offset & IN_PAGE)
    if (byte !== 0 && length > 0n && start + Number(length) <= PAGE_SIZE) {
      // Within one page (a resolved 4 KiB unit): no piece walk.
      this.page(pageIndex(offset)).fill(byte, start, start + Number(length))
      return
    }
    if (byte === 0) {
      // Zeroing touches only pages that exist: the others already read as zeroes.
      this.visitResident(offset, length, (page, start, len) => page.fill(0, start, start + len))
      return
    }
    forEachPiece(offset, length, (index, start, len) => {
      this.page(index).fill(byte, start, start + len)
    })
  }

  /** The offset from `offset` of the first byte in [offset, offset+length) that is not `byte`, or -1n. */
  findMismatch(offset: bigint, length: bigint, byte: number): bigint {
    if (byte === 0) {
      let first = -1n
      this.visitResident(offset, length, (page, start, len, at) => {
        const i = page.subarray(start, start + len).findIndex((b) => b !== 0)
        if (i >= 0 && (first < 0n || at + BigInt(i) < first)) first = at + BigInt(i)
      })
      return first
    }
    let found = -1n
    forEachPiece(offset, length, (index, start, len, done) => {
      const page = this.pages.get(index)
      const i = page === undefined ? 0 : page.subarray(start, start + len).findIndex((b) => b !== byte)
      if (i < 0) return false
      found = BigInt(done + i)
      return true
    })
    return found
  }

  /** Drops the pages wholly or partly inside [offset, offset+length); partial pages are zeroed. */
  discard(offset: bigint, length: bigint): void {
    this.visitResident(offset, length, (page, start, len, _at, index) => {
      if (len === PAGE_SIZE) this.pages.delete(index)
      else page.fill(0, start, start + len)
    })
  }

  /**
   * Visits the resident pages that overlap [offset, offset+length), in no particular order:
   * `at` is the piece's distance from `offset`. Walks whichever is smaller, the range or the store.
   */
  private visitResident(
    offset: bigint,
    length: bigint,
    visit: (page: Uint8Array, start: number, length: number, at: bigint, index: number) => void,
  ): void {
    if (length <= 0n) return
    const end = offset + length
    const first = pageIndex(offset)
    const last = pageIndex(end - 1n)
    const piece = (index: number, page: Uint8Array): void => {
      const pageStart = BigInt(index) << BigInt(PAGE_SHIFT)
      const from = offset > pageStart ? offset : pageStart
      const to = end < pageStart + PAGE ? end : pageStart + PAGE
      visit(page, Number(from - pageStart), Number(to - from), from - offset, index)
    }
    if (last - first + 1 <= this.pages.size) {
      for (let index = first; index <= last; index++) {
        const page = this.pages.get(index)
        if (page !== undefined) piece(index, page)
      }
      return
    }
    for (const [index, page] of [...this.pages]) {
      if (index >= first && index <= last) piece(index, page)
    }
  }
}
