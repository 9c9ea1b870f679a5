// The host half of the fuzzer's model: each slot id's shmem pages (page cache, the primary mapping's
// PTE, the u32 at the page's start) and the userfaultfd registered over them. The rules, each with
// where it was read (Linux 6.17/6.18 sources through the code corpus; upstream-selftests.md §A, §B):
//
// - A host access through the primary mapping faults only where its PTE is none. shmem_get_folio_gfp():
//   a page in the page cache with MINOR registration -> handle_userfault(VM_UFFD_MINOR); a page missing
//   from the cache with MISSING registration -> handle_userfault(VM_UFFD_MISSING); otherwise the fault is
//   served (a hole is allocated, zero-filled). The waiter's uffd_msg (userfault_msg()) has the faulting
//   page's address (no UFFD_FEATURE_EXACT_ADDRESS) and flags WRITE for a write fault, MINOR for a minor
//   one, nothing else.
// - A read fault maps the file's other cached pages of the VMA too (do_read_fault() fault-around, before
//   the userfaultfd is consulted), except in a MINOR-registered VMA (uffd_disable_fault_around()): their
//   PTEs become `maybe`. Found by the fuzzer on the native kernel: a MISSING-blocked read of page 0 left
//   page 1 (cached through the alias) mapped, so UFFDIO_CONTINUE of it gave EEXIST.
// - MADV_REMOVE punches the page out of the file (every mapping loses it, it reads as zero again);
//   MADV_DONTNEED only drops the primary PTE. Both run the MMU notifiers, so KVM must drop its mapping of
//   the page (kvm_mmu_notifier_invalidate_range_start()). Neither sends an event: the uffd never asks for
//   UFFD_FEATURE_EVENT_REMOVE.
// - UFFDIO_COPY (mfill_atomic() -> shmem_mfill_atomic_pte()): an unregistered VMA -> ENOENT
//   (validate_dst_vma()); a page already in the cache -> EEXIST (shmem_add_to_page_cache()).
// - UFFDIO_CONTINUE (mfill_atomic_pte_continue()): unregistered -> ENOENT; no page in the cache -> EFAULT;
//   a PTE already there -> EEXIST (mfill_atomic_install_pte()). The kernel does not check for MINOR
//   registration, but UFFDIO_REGISTER only promises CONTINUE on MINOR ranges ("CONTINUE ioctl is only
//   supported for MINOR ranges"), so on a MISSING-only range EINVAL is allowed too.
// - UFFDIO_REGISTER of a range this uffd has registered replaces the mode (userfaultfd_register_range()).
//   UFFDIO_UNREGISTER wakes the range's waiters only in a MISSING-registered VMA (userfaultfd_missing()
//   in userfaultfd_unregister()): a MINOR waiter stays asleep until UFFDIO_WAKE. close() of the uffd
//   (userfaultfd_release()) unregisters everything and wakes every waiter.

import { PAGE, SLOT_IDS, SLOT_PAGES, type SlotId } from './model.ts'

export type UffdMode = 'MISSING' | 'MINOR'
export type Tri = 'yes' | 'no' | 'maybe'

export interface HostPage {
  /** In the shmem file's page cache. */
  cache: boolean
  /** The primary mapping (the memslot's userspace_addr) has a PTE for it. */
  pte: Tri
  /** The u32 at the page's first byte (what a guest read of the page's u64 reports in GUEST_SYNC). */
  value: number
}

export interface HostModel {
  /** Each slot id's pages (the slot's host memory outlives the slot). */
  pages: Map<SlotId, HostPage[]>
  /** Whether the run's userfaultfd is open, and each slot id's registration with it. */
  uffd: { open: boolean; modes: Map<SlotId, UffdMode> }
}

export function emptyHost(): HostModel {
  const fresh = (): HostPage[] => Array.from({ length: SLOT_PAGES }, () => ({ cache: false, pte: 'no' as Tri, value: 0 }))
  return { pages: new Map(SLOT_IDS.map((s) => [s, fresh()])), uffd: { open: false, modes: new Map() } }
}

/** What a host access to a page meets: served at once, or a userfaultfd block of this kind. */
export type HostOutcome = 'none' | 'missing' | 'minor'

export function hostOutcomes(h: Readonly<HostModel>, id: SlotId, page: number): Set<HostOutcome> {
  const p = h.pages.get(id)![page]!
  const mode = h.uffd.modes.get(id)
  const ifFault: HostOutcome = p.cache ? (mode === 'MINOR' ? 'minor' : 'none') : mode === 'MISSING' ? 'missing' : 'none'
  if (p.pte === 'yes') return new Set(['none'])
  if (p.pte === 'no') return new Set([ifFault])
  return new Set<HostOutcome>(['none', ifFault])
}

/** The uffd_msg flags of a block (UFFD_PAGEFAULT_FLAG_WRITE = 1, _MINOR = 4). */
export function blockFlags(kind: 'missing' | 'minor', write: boolean): bigint {
  return (write ? 1n : 0n) | (kind === 'minor' ? 4n : 0n)
}

/**
 * A read fault on the page may map the file's other cached pages of the VMA first: do_read_fault() calls
 * do_fault_around() before __do_fault() (so before shmem_fault() looks at the userfaultfd: it happens even
 * when the access then blocks), except in a MINOR-registered VMA (uffd_disable_fault_around()). Their
 * PTEs become `maybe`. Called where a read may reach the host's fault path.
 */
export function faultAround(h: HostModel, id: SlotId, page: number, write: boolean): void {
  const pages = h.pages.get(id)!
  if (write || pages[page]!.pte === 'yes' || h.uffd.modes.get(id) === 'MINOR') return
  for (const [i, q] of pages.entries()) if (i !== page && q.cache && q.pte === 'no') q.pte = 'maybe'
}

/** After a host access to the page completed: it is cached and mapped, and holds what a write stored. */
export function accessed(h: HostModel, id: SlotId, page: number, value?: number): void {
  const p = h.pages.get(id)![page]!
  p.cache = true
  p.pte = 'yes'
  if (value !== undefined) p.value = value
}

/** The host address of page `page` of a mapping at `base`. */
export const pageAddr = (base: bigint, page: number): bigint => base + BigInt(page) * PAGE
