// The emulated process's page fault on one page (handle_mm_fault()), for whoever reaches a page of host
// memory that has no PTE: KVM's hva_to_pfn() on a guest access or KVM_PRE_FAULT_MEMORY, or a host access
// through a HostMapping. The order is the kernel's:
//   1. no mapping -> SIGSEGV; a page the object refuses (past EOF, private guest_memfd) -> SIGBUS;
//   2. a read fault on a shared file first maps the file's cached neighbours (do_fault_around()), except
//      in a MINOR- or WP-registered range (uffd_disable_fault_around());
//   3. a page still not mapped: handle_userfault() when the range is registered for this kind of fault
//      (MISSING: anonymous page without PTE, shmem page not in the page cache; MINOR: shmem page in the
//      page cache but not mapped here). A userfaultfd with UFFD_FEATURE_SIGBUS raises SIGBUS instead of
//      waiting; one made with UFFD_USER_MODE_ONLY does not take a fault from kernel mode (KVM's accesses)
//      and the access fails as SIGBUS would. Otherwise the fault's message is queued and the caller
//      sleeps on the returned wait, then faults again;
//   4. otherwise the fault is served: a PTE (and for shmem a page-cache page).

import { UFFD_FEATURE_SIGBUS, UFFD_PAGEFAULT_FLAG_MINOR, UFFD_PAGEFAULT_FLAG_WRITE, UFFD_FEATURE_EXACT_ADDRESS, UFFDIO_REGISTER_MODE_MINOR, UFFDIO_REGISTER_MODE_MISSING, UFFDIO_REGISTER_MODE_WP } from '../../harness/uapi/userfaultfd.ts'
import { refuses, type AddressSpace, type Fault, type Vma } from './address-space.ts'
import { PAGE_SIZE } from './page-store.ts'
import type { PageState } from './host-page-tables.ts'
import type { UffdSegment } from './uffd-registrations.ts'
import type { Userfaultfd, UffdWait } from './userfaultfd.ts'

const PAGE_MASK = ~(BigInt(PAGE_SIZE) - 1n)

export interface FaultAccess {
  write: boolean
  /** FAULT_FLAG_USER: the process touched the page itself (a HostMapping access), not the kernel for it. */
  user: boolean
  /**
   * The address the access really touched (vmf->real_address), reported with UFFD_FEATURE_EXACT_ADDRESS.
   * KVM's get_user_pages() faults on the page's first byte; an emulated uaccess on the byte itself.
   */
  realAddress: bigint
}

export type HostPageFault =
  | { kind: 'mapped' }
  | { kind: 'signal'; fault: Fault }
  /** handle_userfault() queued a message: the faulting thread sleeps on `wait`, then faults again. */
  | { kind: 'userfault'; uffd: Userfaultfd; wait: UffdWait }

/** The registration's answer to a fault on a page that is not mapped: which kind of fault it reports. */
export function userfaultReason(
  space: AddressSpace, vma: Vma, page: bigint, state: PageState = space.ptes.state(vma, page),
): { seg: UffdSegment; minor: boolean } | undefined {
  const seg = space.uffd.find(page)
  if (seg === undefined || seg.uffd.isReleased) return undefined
  if (state === 'missing' && (seg.mode & UFFDIO_REGISTER_MODE_MISSING) !== 0) return { seg, minor: false }
  if (state === 'minor' && (seg.mode & UFFDIO_REGISTER_MODE_MINOR) !== 0) return { seg, minor: true }
  return undefined
}

/** Steps 1 and 2 without their side effects' consequences for the caller: the fault up to handle_userfault(). */
function prepare(space: AddressSpace, addr: bigint, write: boolean): Fault | Vma {
  const page = addr & PAGE_MASK
  const vma = space.find(page)
  if (vma === undefined) return { fault: 'SIGSEGV', address: addr }
  if (refuses(vma, page)) return { fault: 'SIGBUS', address: addr }
  if (!write && !space.ptes.hasPte(page)) {
    const seg = space.uffd.find(page)
    if (seg === undefined || (seg.mode & (UFFDIO_REGISTER_MODE_MINOR | UFFDIO_REGISTER_MODE_WP)) === 0) space.ptes.faultAround(vma, page)
  }
  return vma
}

/** handle_mm_fault() for the page holding `addr`. */
export function hostPageFault(space: AddressSpace, addr: bigint, access: FaultAccess): HostPageFault {
  const page = addr & PAGE_MASK
  const vma = prepare(space, addr, access.write)
  if (!('start' in vma)) return { kind: 'signal', fault: vma }
  const state = space.ptes.state(vma, page)
  if (state === 'present') return { kind: 'mapped' }
  const reason = space.uffd.isEmpty ? undefined : userfaultReason(space, vma, page, state)
  if (reason !== undefined) {
    const uffd = reason.seg.uffd
    // handle_userfault(): UFFD_FEATURE_SIGBUS, or a kernel fault on a UFFD_USER_MODE_ONLY context -> VM_FAULT_SIGBUS.
    if (uffd.has(UFFD_FEATURE_SIGBUS) || (uffd.userModeOnly && !access.user)) {
      return { kind: 'signal', fault: { fault: 'SIGBUS', address: addr } }
    }
    // userfault_msg(): the page's address (the exact one with UFFD_FEATURE_EXACT_ADDRESS), WRITE for a
    // write fault, MINOR for a minor one.
    const flags = (access.write ? BigInt(UFFD_PAGEFAULT_FLAG_WRITE) : 0n) | (reason.minor ? BigInt(UFFD_PAGEFAULT_FLAG_MINOR) : 0n)
    const address = uffd.has(UFFD_FEATURE_EXACT_ADDRESS) ? access.realAddress : page
    return { kind: 'userfault', uffd, wait: uffd.fault({ address, flags }) }
  }
  space.ptes.map(vma, page, page + BigInt(PAGE_SIZE))
  return { kind: 'mapped' }
}
