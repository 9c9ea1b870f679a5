// A host access through a HostMapping (the process touching its own memory) and userfaultfd.
//
// In a real process such an access to a page a userfaultfd covers as missing (or minor) sleeps in
// handle_userfault() until someone resolves the page: the calling thread is gone until then. The emulator
// has one thread, the one that would resolve the page, so it does not sleep: the access stops at that
// page and the caller is told (contract/mapping.ts rejects with EDEADLK, "resource deadlock avoided", naming the
// page and the userfaultfd). A userfaultfd with UFFD_FEATURE_SIGBUS makes the same access raise SIGBUS
// in the kernel, and here too. Bytes before the page are accessed first, as in the kernel.
//
// Afterwards the pages the access reached have PTEs (host-page-tables.ts): a read maps the zero page or
// the page-cache page (with fault-around on shmem), a write a page of its own.

import { UFFD_FEATURE_SIGBUS } from '../../harness/uapi/userfaultfd.ts'
import type { AddressSpace, Fault } from './address-space.ts'
import { hostPageFault, userfaultReason } from './host-page-fault.ts'
import { PAGE_SIZE, pageAlignUp } from './page-store.ts'
import type { Userfaultfd } from './userfaultfd.ts'

const PAGE = BigInt(PAGE_SIZE)
/** Up to this many pages a shmem read is faulted in page by page (with fault-around); larger ones at once. */
const PAGEWISE_READ_PAGES = 4096n

/** Where an access stops because of a userfaultfd, before it is made. */
export type UserfaultStop =
  | { kind: 'sigbus'; fault: Fault }
  /** The access would sleep on `uffd` for the page at `address` (a `minor` fault or a missing one). */
  | { kind: 'would-block'; address: bigint; uffd: Userfaultfd; minor: boolean }

/** The first page of [addr, addr + length) whose fault would go to a userfaultfd, if any. */
export function userfaultStop(space: AddressSpace, addr: bigint, length: bigint): UserfaultStop | undefined {
  if (space.uffd.isEmpty || length <= 0n) return undefined
  const end = addr + length
  for (const seg of space.uffd.overlapping(addr & ~(PAGE - 1n), end)) {
    let page = (seg.start > addr ? seg.start : addr) & ~(PAGE - 1n)
    for (; page < seg.end && page < end; page += PAGE) {
      const vma = space.find(page)
      if (vma === undefined) continue
      const reason = userfaultReason(space, vma, page)
      if (reason === undefined) continue
      const at = page > addr ? page : addr
      if (reason.seg.uffd.has(UFFD_FEATURE_SIGBUS)) return { kind: 'sigbus', fault: { fault: 'SIGBUS', address: at } }
      return { kind: 'would-block', address: at, uffd: reason.seg.uffd, minor: reason.minor }
    }
  }
  return undefined
}

/** How many bytes of an access of `length` at `addr` happen before `stop` (all of them without one). */
export function bytesBefore(stop: UserfaultStop | undefined, addr: bigint, length: bigint): bigint {
  if (stop === undefined) return length
  return (stop.kind === 'sigbus' ? stop.fault.address : stop.address) - addr
}

/** The PTEs an access of [addr, end) left behind (end: where it stopped, or its end). */
export function faultedIn(space: AddressSpace, addr: bigint, end: bigint, write: boolean): void {
  if (end <= addr) return
  const from = addr & ~(PAGE - 1n)
  const to = pageAlignUp(end)
  for (const p of space.pieces(from, to)) {
    if (p.vma === undefined) continue
    if (write || p.vma.object.kind === 'anonymous' || (p.to - p.from) / PAGE > PAGEWISE_READ_PAGES) {
      space.ptes.map(p.vma, p.from, p.to)
      continue
    }
    // A read of a shared file: each page's fault maps its cached neighbours first (do_fault_around()).
    for (let page = p.from; page < p.to; page += PAGE) {
      if (!space.ptes.hasPte(page)) hostPageFault(space, page, { write: false, user: true, realAddress: page })
    }
  }
}
