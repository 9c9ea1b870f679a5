// KVM_CHECK_EXTENSION: the answers of /dev/kvm (`vmType` null) and of a VM fd, as x86 6.18 gives them
// (kvm_vm_ioctl_check_extension_generic() falling through to x86's kvm_vm_ioctl_check_extension()).

import {
  KVM_CAP_DISABLE_QUIRKS2,
  KVM_CAP_GUEST_MEMFD,
  KVM_CAP_GUEST_MEMFD_FLAGS,
  KVM_CAP_MAX_VCPUS,
  KVM_CAP_MEMORY_ATTRIBUTES,
  KVM_CAP_MEMORY_FAULT_INFO,
  KVM_CAP_NR_MEMSLOTS,
  KVM_CAP_PRE_FAULT_MEMORY,
  KVM_CAP_USER_MEMORY2,
  KVM_CAP_VM_TYPES,
  KVM_CAP_X86_APIC_BUS_CYCLES_NS,
  KVM_CAP_X86_GUEST_MODE,
} from '../../harness/uapi/kvm.ts'
import type { KernelProfile } from './profiles.ts'
import { userfaultRules } from './userfault.ts'
import { maxVcpuIds } from './vcpu.ts'
import {
  hasReadonlyMem,
  nrMemslotAsIds,
  supportedGmemFlags,
  supportedMemAttributes,
  vmTypesMask,
} from './vm-types.ts'

// Older capabilities the memory rules imply; not (yet) in harness/uapi/kvm.ts.
/** include/uapi/linux/kvm.h: KVM_CAP_USER_MEMORY. */
export const KVM_CAP_USER_MEMORY = 3
/** include/uapi/linux/kvm.h: KVM_CAP_READONLY_MEM. */
export const KVM_CAP_READONLY_MEM = 81
/** include/uapi/linux/kvm.h: KVM_CAP_MULTI_ADDRESS_SPACE. */
export const KVM_CAP_MULTI_ADDRESS_SPACE = 118
/** include/uapi/linux/kvm.h: KVM_CAP_MAX_VCPU_ID. */
export const KVM_CAP_MAX_VCPU_ID = 128

/** KVM_CHECK_EXTENSION on the system fd (`vmType` null) or on a VM of `vmType`. Unknown caps are 0. */
export function checkExtension(profile: KernelProfile, vmType: number | null, cap: number): number {
  // KVM Userfault series: KVM_CAP_USERFAULT (239 in v1/v2, 243 in v3, numbers upstream later gave to arm64
  // capabilities that x86 answers 0) is 1 on every VM: v2 kvm_has_userfault() is
  // IS_ENABLED(CONFIG_HAVE_KVM_USERFAULT), v3 CONFIG_KVM_GENERIC_PAGE_FAULT, both built on x86.
  if (cap === userfaultRules(profile)?.cap) return 1
  switch (cap) {
    case KVM_CAP_USER_MEMORY:
    case KVM_CAP_USER_MEMORY2:
    case KVM_CAP_MEMORY_FAULT_INFO:
      return 1
    case KVM_CAP_READONLY_MEM:
      // x86: kvm ? kvm_arch_has_readonly_mem(kvm) : 1
      return profile.readonlyMem && (vmType === null || hasReadonlyMem(profile, vmType)) ? 1 : 0
    case KVM_CAP_MULTI_ADDRESS_SPACE:
      // Only compiled in when KVM_MAX_NR_ADDRESS_SPACES > 1 (x86: CONFIG_KVM_SMM); measured 0 on PVM.
      if (profile.nrAddressSpaces <= 1) return 0
      return vmType === null ? profile.nrAddressSpaces : nrMemslotAsIds(profile, vmType)
    case KVM_CAP_NR_MEMSLOTS:
      return profile.nrMemslots
    case KVM_CAP_MAX_VCPUS:
      return profile.maxVcpus
    case KVM_CAP_MAX_VCPU_ID:
      // x86: KVM_MAX_VCPU_IDS (kvm->arch.max_vcpu_ids once KVM_ENABLE_CAP set it, which this model cannot)
      return maxVcpuIds(profile)
    case KVM_CAP_GUEST_MEMFD:
      // 6.18: 1 on every VM type once CONFIG_KVM_GUEST_MEMFD is built (6.17 answered per VM).
      return profile.guestMemfd ? 1 : 0
    case KVM_CAP_GUEST_MEMFD_FLAGS:
      return Number(supportedGmemFlags(profile, vmType))
    case KVM_CAP_MEMORY_ATTRIBUTES:
      return Number(supportedMemAttributes(profile, vmType))
    case KVM_CAP_VM_TYPES:
      return vmTypesMask(profile)
    case KVM_CAP_PRE_FAULT_MEMORY:
      // x86: r = tdp_enabled
      return profile.tdp ? 1 : 0
    case KVM_CAP_DISABLE_QUIRKS2:
      return profile.supportedQuirks
    case KVM_CAP_X86_APIC_BUS_CYCLES_NS:
      // x86: APIC_BUS_CYCLE_NS_DEFAULT (1 ns); measured 1 on the 6.18 host
      return 1
    case KVM_CAP_X86_GUEST_MODE:
      // x86: 1 (kvm_run->flags reports KVM_RUN_X86_GUEST_MODE); measured 1 on the 6.18 host
      return 1
    default:
      return 0
  }
}
