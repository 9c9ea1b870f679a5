// Which pages of the emulated process are mapped by its page tables (PTEs), and which shmem pages are in
// the page cache: what userfaultfd's rules ask ("is this page missing?") and nothing else reads.
//
// - An anonymous page is present once its PTE exists: after any fault on it (a read maps the zero page,
//   a write a fresh page) or a UFFDIO_COPY/ZEROPAGE, or once it holds data (PageStore residency, which
//   only a write or a copy gives). MADV_DONTNEED and munmap() drop both.
// - A shmem page has two levels. The page cache (per file: a page written through any mapping, or
//   allocated by a fault on a hole, or by UFFDIO_COPY/ZEROPAGE) and, per mapping, the PTE. A page in the
//   page cache without a PTE in this mapping is what a MINOR fault is about; an alias mapping has its own
//   PTEs; MADV_DONTNEED drops one mapping's PTEs and keeps the page cache; MADV_REMOVE drops both.
//
// PTEs are kept by virtual page number (hva >> 12) for the whole address space, so an alias is naturally
// separate; the page cache by page index per file. AddressSpace.invalidate() (munmap, MADV_DONTNEED,
// MADV_REMOVE, a hole punched: every path that zaps PTEs) calls drop().

import type { MemoryObject, Vma } from './address-space.ts'
import { PAGE_SHIFT, pageIndex } from './page-store.ts'
import { RangeSet } from './range-set.ts'

const SHIFT = BigInt(PAGE_SHIFT)
/** fault_around_bytes' default (64 KiB): do_fault_around() maps up to 16 cached pages around a read fault. */
export const FAULT_AROUND_PAGES = 16

/** A page as a fault on it would find it. */
export type PageState =
  /** Mapped in this mapping's page tables: no fault. */
  | 'present'
  /** Anonymous: no PTE; shmem: not in the page cache (a MISSING fault). */
  | 'missing'
  /** shmem: in the page cache but not mapped here (a MINOR fault). */
  | 'minor'

export function vpn(addr: bigint): number {
  return Number(addr >> SHIFT)
}

/** The page index in `vma`'s object of the page holding `addr`. */
export function objectPage(vma: Vma, addr: bigint): number {
  return pageIndex(vma.offset + (addr - vma.start))
}

export class HostPageTables {
  private readonly ptes = new RangeSet()
  /** Page-cache pages of a file that hold no data (faulted in by a read, zero-filled): PageStore has none. */
  private readonly cached = new WeakMap<MemoryObject, RangeSet>()

  private cacheOf(object: MemoryObject): RangeSet {
    let set = this.cached.get(object)
    if (set === undefined) this.cached.set(object, (set = new RangeSet()))
    return set
  }

  /** zap_page_range(): the PTEs of [start, end) go; the pages themselves are the caller's business. */
  drop(start: bigint, end: bigint): void {
    this.ptes.delete(vpn(start), vpn(end + (1n << SHIFT) - 1n))
  }

  /** The file's pages [first, end) left the page cache (MADV_REMOVE, a punched hole). */
  dropCache(object: MemoryObject, first: number, end: number): void {
    this.cached.get(object)?.delete(first, end)
  }

  hasPte(addr: bigint): boolean {
    return this.ptes.has(vpn(addr))
  }

  /** Whether page `index` of a shared file is in its page cache. */
  inPageCache(object: MemoryObject, index: number): boolean {
    return object.pages.hasPage(index) || (this.cached.get(object)?.has(index) ?? false)
  }

  state(vma: Vma, addr: bigint): PageState {
    const index = objectPage(vma, addr)
    if (this.ptes.has(vpn(addr))) return 'present'
    if (vma.object.kind === 'anonymous') return vma.object.pages.hasPage(index) ? 'present' : 'missing'
    return this.inPageCache(vma.object, index) ? 'minor' : 'missing'
  }

  /**
   * A fault on [from, to) of `vma` was served (or UFFDIO_* installed the pages): PTEs for every page, and
   * for a shared file the pages enter its page cache (shmem_fault() allocates a hole's page).
   */
  map(vma: Vma, from: bigint, to: bigint): void {
    this.ptes.add(vpn(from), vpn(to + (1n << SHIFT) - 1n))
    if (vma.object.kind === 'anonymous') return
    const first = objectPage(vma, from)
    const end = objectPage(vma, to - 1n) + 1
    // A page with data is in the page cache already (inPageCache() asks the PageStore first).
    if (end - first === 1 && vma.object.pages.hasPage(first)) return
    this.cacheOf(vma.object).add(first, end)
  }

  /** Only the PTE (UFFDIO_CONTINUE: the page-cache page is mapped as it is). */
  mapPte(addr: bigint): void {
    this.ptes.add(vpn(addr), vpn(addr) + 1)
  }

  /**
   * do_fault_around() for a read fault at `addr` on a shared file's mapping: filemap_map_pages() maps the
   * file's cached pages in the 16-page-aligned window around the address (clamped to the VMA), before
   * the fault itself is handled, so also when it then waits on a userfaultfd. The caller skips it where
   * uffd_disable_fault_around() does (MINOR- or WP-registered ranges).
   */
  faultAround(vma: Vma, addr: bigint): void {
    if (vma.object.kind === 'anonymous') return
    const page = vpn(addr)
    const from = Math.max(page - (page % FAULT_AROUND_PAGES), vpn(vma.start))
    const to = Math.min(from + FAULT_AROUND_PAGES, vpn(vma.end - 1n) + 1)
    for (let p = from; p < to; p++) {
      if (this.ptes.has(p)) continue
      if (this.inPageCache(vma.object, objectPage(vma, BigInt(p) << SHIFT))) this.ptes.add(p, p + 1)
    }
  }
}
