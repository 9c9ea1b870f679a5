// The simulated host process's address space: the mappings (VMAs) a test's mmap() calls create, and
// host accesses through them. Accesses that would raise a signal in a real process return a fault
// instead: SIGSEGV where nothing is mapped, SIGBUS where the object behind the mapping refuses the page
// (past the end of a file, or guest_memfd memory that is private).

import type { Backing } from '../../harness/backend.ts'
import { HostPageTables } from './host-page-tables.ts'
import { PAGE_SIZE, PageStore, pageAlignUp, pageIndex } from './page-store.ts'
import { UffdRegistrations } from './uffd-registrations.ts'

/** x86-64 TASK_SIZE_MAX with 4-level paging: the end of user space minus the guard page. */
export const TASK_SIZE_MAX = 0x7ffffffff000n
/** Where the emulator's mmap() starts handing out addresses, downwards, as a real process's mmap_base. */
export const MMAP_BASE = 0x7f0000000000n
/** vm.mmap_min_addr's usual value: nothing is mapped below it. */
export const MMAP_MIN_ADDR = 0x10000n
const U64_MAX = (1n << 64n) - 1n
const PMD_SIZE = 2n << 20n
const IN_PAGE = BigInt(PAGE_SIZE) - 1n

export const AVAILABLE_BACKINGS: readonly Backing[] = ['anonymous', 'anonymous_thp', 'shmem']
/** hugetlbfs has no pages reserved in the emulator (nor on the project's machines). */
export const UNAVAILABLE_BACKINGS: readonly Backing[] = ['anonymous_hugetlb', 'shared_hugetlb']

/**
 * x86 access_ok(addr, size) as KVM calls it with a run-time size: addr + size must not wrap and must
 * not pass the top of user space. Measured on the project's 6.18 host: an end of exactly TASK_SIZE_MAX
 * is accepted and an end of 1 << 47 is not; the differential test against the real kernel pins it.
 */
export function accessOk(addr: bigint, size: bigint): boolean {
  const end = addr + size
  return end <= U64_MAX && end <= TASK_SIZE_MAX
}

/**
 * untagged_addr(): x86-64 strips address tags only for a process that enabled LAM; the emulated process
 * never does, so every address is its own untagged form (a "tagged" pointer then fails access_ok()).
 */
export function untaggedAddr(addr: bigint): bigint {
  return addr
}

/** A memory object that mappings share: an anonymous region, a memfd/shmem file or a guest_memfd. */
export interface MemoryObject {
  readonly kind: 'anonymous' | 'shmem' | 'guest_memfd'
  readonly pages: PageStore
  /**
   * Transparent huge pages back it (anonymous_thp: MADV_HUGEPAGE, as kvm_util maps that backing): a 2 MiB
   * aligned range inside one mapping of it is one host huge page. Plain anonymous memory is mapped with
   * MADV_NOHUGEPAGE by kvm_util, and shmem THP is off by default, so neither is.
   */
  readonly thp?: boolean
  /** The first page index in [first, end) a host access may not touch (SIGBUS), if any. */
  firstRefusedPage(first: number, end: number): number | undefined
}

/** Anonymous memory: its own pages, every one accessible; `thp` for the anonymous_thp backing. */
export function anonymousObject(thp = false): MemoryObject {
  return { kind: 'anonymous', pages: new PageStore(), firstRefusedPage: () => undefined, thp }
}

/** A shmem file (memfd) of `size` bytes: a page at or past EOF raises SIGBUS, as shmem_fault() does. */
export function shmemObject(size: bigint): MemoryObject {
  const eof = pageIndex(pageAlignUp(size))
  return {
    kind: 'shmem',
    pages: new PageStore(),
    firstRefusedPage: (first, end) => (end > eof ? Math.max(first, eof) : undefined),
  }
}

export interface Vma {
  readonly start: bigint
  readonly end: bigint
  readonly object: MemoryObject
  /** Byte offset into the object of `start`. */
  readonly offset: bigint
}

export type Fault = { fault: 'SIGSEGV' | 'SIGBUS'; address: bigint }

/** Whether the object behind `vma` refuses the host the page holding `addr` (SIGBUS). */
export function refuses(vma: Vma, addr: bigint): boolean {
  return refusesAt(vma.object, vma.offset + (addr - vma.start))
}

/** Whether `object` refuses the host the page holding its byte `offset`. */
function refusesAt(object: MemoryObject, offset: bigint): boolean {
  const index = pageIndex(offset)
  return object.firstRefusedPage(index, index + 1) !== undefined
}

export function isFault(value: unknown): value is Fault {
  return typeof value === 'object' && value !== null && 'fault' in value
}

/** Hears that the process's pages in [start, end) went away (an MMU notifier's invalidate_range_start). */
export type InvalidateRange = (start: bigint, end: bigint) => void

export class AddressSpace {
  /** Mappings sorted by descending start: new ones come from lower addresses, so they append. */
  private readonly vmas: Vma[] = []
  private next = MMAP_BASE
  private readonly notifiers = new Set<InvalidateRange>()
  /** Which pages the process's page tables map (what userfaultfd calls missing): host-page-tables.ts. */
  readonly ptes = new HostPageTables()
  /** Which ranges userfaultfds cover (the VMAs' vm_userfaultfd_ctx): uffd-registrations.ts. */
  readonly uffd = new UffdRegistrations()

  /** mmu_notifier_register(): `fn` hears of every range invalidated from now on; call the result to stop. */
  onInvalidate(fn: InvalidateRange): () => void {
    this.notifiers.add(fn)
    return () => this.notifiers.delete(fn)
  }

  /** mmu_notifier_invalidate_range_start(): the process's page tables lose [start, end). */
  invalidate(start: bigint, end: bigint): void {
    this.ptes.drop(start, end)
    for (const fn of this.notifiers) fn(start, end)
  }

  /**
   * Invalidates every mapping of `object`'s bytes [offset, offset + length): what unmap_mapping_range()
   * does when a shared file's pages are removed (MADV_REMOVE, a hole punched), in every alias.
   */
  invalidateObject(object: MemoryObject, offset: bigint, length: bigint): void {
    for (const vma of [...this.vmas]) {
      if (vma.object !== object) continue
      const from = offset > vma.offset ? offset : vma.offset
      const vmaEnd = vma.offset + (vma.end - vma.start)
      const to = offset + length < vmaEnd ? offset + length : vmaEnd
      if (from < to) this.invalidate(vma.start + (from - vma.offset), vma.start + (to - vma.offset))
    }
  }

  /** mmap(NULL, size, ...): the mapping, or ENOMEM when the address space is used up. */
  map(object: MemoryObject, size: bigint, offset = 0n): Vma | 'ENOMEM' {
    const length = pageAlignUp(size)
    if (length <= 0n) throw new RangeError('AddressSpace.map: the length must be positive')
    // Mappings of 2 MiB or more start on a 2 MiB boundary, as the kernel's THP-aligned
    // get_unmapped_area places them, so a huge host page can back a huge guest mapping later.
    const align = length >= PMD_SIZE ? PMD_SIZE : BigInt(PAGE_SIZE)
    const start = (this.next - length) & ~(align - 1n)
    if (start < MMAP_MIN_ADDR) return 'ENOMEM'
    const vma: Vma = { start, end: start + length, object, offset }
    this.vmas.push(vma)
    this.next = start
    return vma
  }

  /** munmap() of one whole mapping, the MMU notifiers told first; unmapping what is not mapped is not an error. */
  unmap(vma: Vma): void {
    const i = this.vmas.indexOf(vma)
    if (i < 0) return
    this.invalidate(vma.start, vma.end)
    this.uffd.clear(vma.start, vma.end) // the VMA and its vm_userfaultfd_ctx go together
    this.vmas.splice(i, 1)
    // Anonymous memory has exactly one mapping (there is no file to map it again), so its pages die
    // with it; they go back to the page pool for the next mapping instead of to the garbage collector.
    if (vma.object.kind === 'anonymous') vma.object.pages.release()
  }

  /** The mapping that contains `addr`, if any. */
  find(addr: bigint): Vma | undefined {
    let lo = 0
    let hi = this.vmas.length - 1
    while (lo <= hi) {
      const mid = (lo + hi) >> 1
      const vma = this.vmas[mid]!
      if (addr >= vma.end) hi = mid - 1
      else if (addr < vma.start) lo = mid + 1
      else return vma
    }
    return undefined
  }

  /**
   * The pieces of [start, end) in address order: each mapped piece with its mapping, and each hole
   * (no mapping) with `vma` undefined.
   */
  *pieces(start: bigint, end: bigint): IterableIterator<{ from: bigint; to: bigint; vma: Vma | undefined }> {
    let cur = start
    while (cur < end) {
      const vma = this.find(cur)
      if (vma !== undefined) {
        const to = end < vma.end ? end : vma.end
        yield { from: cur, to, vma }
        cur = to
        continue
      }
      // The hole runs to the lowest mapping start above `cur` (the array is sorted by descending start).
      let to = end
      for (const v of this.vmas) if (v.start > cur && v.start < to) to = v.start
      yield { from: cur, to, vma: undefined }
      cur = to
    }
  }

  /**
   * x86 host_pfn_mapping_level() >= PG_LEVEL_2M: the page at `addr` is part of a 2 MiB host page, i.e. a
   * THP-backed mapping covers the whole 2 MiB-aligned range around it.
   */
  hugeMapped(addr: bigint): boolean {
    const vma = this.find(addr)
    if (vma === undefined || vma.object.thp !== true) return false
    const start = addr & ~(PMD_SIZE - 1n)
    return start >= vma.start && start + PMD_SIZE <= vma.end
  }

  get mappingCount(): number {
    return this.vmas.length
  }

  /**
   * The mapping and object offset of an access of `length` bytes at `addr` that stays inside one page the
   * object lets the host touch, or undefined when the access needs the piece-by-piece walk (it crosses a
   * page, or may fault). Every guest access is such an access: this keeps them off walk()'s closures.
   */
  private inOnePage(addr: bigint, length: number): { vma: Vma; offset: bigint } | undefined {
    const vma = this.find(addr)
    if (vma === undefined || length === 0 || Number(addr & IN_PAGE) + length > PAGE_SIZE) return undefined
    const offset = vma.offset + (addr - vma.start)
    return refusesAt(vma.object, offset) ? undefined : { vma, offset }
  }

  read(addr: bigint, length: number): Uint8Array | Fault {
    const one = this.inOnePage(addr, length)
    if (one !== undefined) return one.vma.object.pages.read(one.offset, length)
    const out = new Uint8Array(length)
    const fault = this.walk(addr, BigInt(length), (store, offset, len, at) => {
      out.set(store.read(offset, Number(len)), Number(at))
    })
    return fault ?? out
  }

  write(addr: bigint, data: Uint8Array): Fault | undefined {
    const one = this.inOnePage(addr, data.length)
    if (one !== undefined) {
      one.vma.object.pages.write(one.offset, data)
      return undefined
    }
    return this.walk(addr, BigInt(data.length), (store, offset, len, at) => {
      store.write(offset, data.subarray(Number(at), Number(at + len)))
    })
  }

  fill(addr: bigint, length: bigint, byte: number): Fault | undefined {
    return this.walk(addr, length, (store, offset, len) => store.fill(offset, len, byte))
  }

  /** The distance from `addr` of the first byte that is not `byte`, or -1n. */
  findMismatch(addr: bigint, length: bigint, byte: number): bigint | Fault {
    let found = -1n
    const fault = this.walk(addr, length, (store, offset, len, at) => {
      const i = store.findMismatch(offset, len, byte)
      if (i < 0n) return false
      found = at + i
      return true
    })
    // A mismatch before the faulting byte is found before the fault is taken, as a byte loop would.
    return found >= 0n ? found : (fault ?? -1n)
  }

  /**
   * Walks [addr, addr+length) mapping by mapping, calling `piece` with the object's pages, the object
   * offset, the piece length and its distance from `addr`; `piece` returns true to stop early.
   * Returns the fault that stops the walk at the first unmapped or refused byte.
   */
  private walk(
    addr: bigint,
    length: bigint,
    piece: (store: PageStore, offset: bigint, length: bigint, at: bigint) => boolean | void,
  ): Fault | undefined {
    let at = 0n
    while (at < length) {
      const cur = addr + at
      const vma = this.find(cur)
      if (vma === undefined) return { fault: 'SIGSEGV', address: cur }
      const end = addr + length < vma.end ? addr + length : vma.end
      const offset = vma.offset + (cur - vma.start)
      const refused = vma.object.firstRefusedPage(pageIndex(offset), pageIndex(offset + (end - cur) - 1n) + 1)
      const stop = refused === undefined ? end : vma.start + (BigInt(refused) * BigInt(PAGE_SIZE) - vma.offset)
      const faultAt = stop > cur ? stop : cur
      if (faultAt > cur && piece(vma.object.pages, offset, faultAt - cur, at) === true) return undefined
      if (refused !== undefined) return { fault: 'SIGBUS', address: faultAt }
      at = end - addr
    }
    return undefined
  }
}
