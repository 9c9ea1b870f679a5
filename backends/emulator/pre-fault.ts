// KVM_PRE_FAULT_MEMORY (api.rst §4.143): the generic argument checks of kvm_vcpu_pre_fault_memory() and
// one step of x86's kvm_arch_vcpu_pre_fault_memory() -> kvm_tdp_map_page(), which maps the gfn as a read
// fault would (page-fault.ts) and reports how many bytes that mapping covers. The loop between the steps
// (signals, partial progress) is the vCPU's: vcpu.ts preFault(). Source: upstream-selftests.md §E.1.

import type { ErrnoName } from '../../harness/uapi/errno.ts'
import type { AddressSpace } from './address-space.ts'
import { PAGE_SHIFT, PAGE_SIZE, isPageAligned } from './page-store.ts'
import { pageFault } from './page-fault.ts'
import { PAGES_PER_2M } from './stage2.ts'
import { U64_MAX } from './u64.ts'
import type { UffdWait } from './userfaultfd.ts'
import type { VmState } from './vm.ts'

/** struct kvm_pre_fault_memory's inputs. */
export interface PreFaultRange {
  gpa: bigint
  size: bigint
  flags: bigint
}

/**
 * kvm_vcpu_pre_fault_memory(): flags != 0 -> EINVAL; gpa or size not page aligned, or gpa + size <= gpa
 * (which covers size 0 and a range that wraps) -> EINVAL. The struct is left as it came.
 */
export function checkPreFault(r: PreFaultRange): ErrnoName | undefined {
  if (r.flags !== 0n) return 'EINVAL'
  if (!isPageAligned(r.gpa) || !isPageAligned(r.size) || ((r.gpa + r.size) & U64_MAX) <= r.gpa) return 'EINVAL'
  return undefined
}

/**
 * x86 kvm_arch_vcpu_pre_fault_memory() after kvm_mmu_reload() (the caller's: without TDP it can fail
 * first, ENOSPC on a shadow-paging VM with no MMU pages yet, as measured on the project's PVM host):
 * the bytes the mapping of `gpa` covers, up to `size` (one step maps up to a huge page), or the errno.
 */
export function preFaultStep(vm: VmState, host: AddressSpace, gpa: bigint, size: bigint): bigint | ErrnoName | { wait: UffdWait } {
  // kvm_tdp_map_page(): shadow paging faults on GVAs, so there is no GPA to map -> EOPNOTSUPP
  // (measured on the PVM host: valid arguments give EOPNOTSUPP, KVM_CAP_PRE_FAULT_MEMORY is 0).
  if (!vm.profile.tdp) return 'EOPNOTSUPP'
  // A read fault; on a VM with private memory a private gfn faults with PFERR_PRIVATE_ACCESS, so the page
  // comes from guest_memfd (pageFault() decides private-ness from the gfn's attributes the same way).
  // An already mapped gfn is RET_PF_SPURIOUS (progress, with the existing mapping's size), after the
  // slow path's checks: a set KVM Userfault bit fails it even then (page-fault.ts).
  const r = pageFault(vm, host, gpa, false, 'pre-fault')
  switch (r.kind) {
    case 'mmio':
      return 'ENOENT' // no memslot: RET_PF_EMULATE -> ENOENT
    case 'retry':
      // The host page went to a userfaultfd: __kvm_mmu_faultin_pfn()'s second, FOLL_INTERRUPTIBLE
      // get_user_pages() sleeps in handle_userfault() like a guest access would (vcpu.ts preFault()).
      if (r.wait !== undefined) return { wait: r.wait }
      return 'EAGAIN' // a memslot being deleted or moved (6.18, kvm-x86 3ccbf6f47098) -> EAGAIN, not a spin
    case 'memory_fault':
    case 'efault':
      // The fault path's -EFAULT: a KVM Userfault bit [inferred], a private gfn without guest_memfd, an hva
      // the host cannot fault in.
      return 'EFAULT'
  }
  const gfn = Number(gpa >> BigInt(PAGE_SHIFT))
  const bytes = BigInt(vm.stage2.level(gfn) === '2M' ? PAGES_PER_2M * PAGE_SIZE : PAGE_SIZE)
  // min(range->size, end of the mapping - gpa)
  const left = (gpa & ~(bytes - 1n)) + bytes - gpa
  return left < size ? left : size
}
