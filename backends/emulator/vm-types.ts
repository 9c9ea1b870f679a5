// x86 VM types (KVM_CREATE_VM's argument) and what each one implies for the memory rules.
//
// The emulator creates only the types a profile lists (DEFAULT and SW_PROTECTED upstream); the others are
// described so the rules read like the kernel's and a later profile can add them.

import {
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  KVM_X86_SEV_ES_VM,
  KVM_X86_SNP_VM,
  KVM_X86_SW_PROTECTED_VM,
  KVM_X86_TDX_VM,
} from '../../harness/uapi/kvm.ts'
import type { KernelProfile } from './profiles.ts'

/** kvm_arch_has_private_mem(): kvm->arch.has_private_mem, set for SW_PROTECTED, SNP and TDX VMs. */
export function hasPrivateMem(type: number): boolean {
  return type === KVM_X86_SW_PROTECTED_VM || type === KVM_X86_SNP_VM || type === KVM_X86_TDX_VM
}

/** kvm->arch.has_protected_state: SEV-ES, SNP and TDX VMs (register state the host cannot read). */
export function hasProtectedState(type: number): boolean {
  return type === KVM_X86_SEV_ES_VM || type === KVM_X86_SNP_VM || type === KVM_X86_TDX_VM
}

/** kvm_arch_has_readonly_mem(): x86 allows read-only memslots unless the VM has protected state. */
export function hasReadonlyMem(profile: KernelProfile, type: number): boolean {
  return profile.readonlyMem && !hasProtectedState(type)
}

/** kvm_arch_nr_memslot_as_ids(): one address space for VMs with private memory (no SMM for them). */
export function nrMemslotAsIds(profile: KernelProfile, type: number): number {
  return hasPrivateMem(type) ? 1 : profile.nrAddressSpaces
}

/**
 * kvm_gmem_get_supported_flags(): MMAP always; INIT_SHARED for the system fd (`type` null) and where
 * kvm_arch_supports_gmem_init_shared() holds, on x86 !kvm_arch_has_private_mem().
 */
export function supportedGmemFlags(profile: KernelProfile, type: number | null): bigint {
  if (!profile.guestMemfd) return 0n
  let flags = GUEST_MEMFD_FLAG_MMAP
  if (type === null || !hasPrivateMem(type)) flags |= GUEST_MEMFD_FLAG_INIT_SHARED
  return flags
}

/** kvm_supported_mem_attributes(): PRIVATE for the system fd and for VMs with private memory. */
export function supportedMemAttributes(profile: KernelProfile, type: number | null): bigint {
  if (!profile.memoryAttributes) return 0n
  return type === null || hasPrivateMem(type) ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0n
}

/** The bitmask KVM_CAP_VM_TYPES reports: bit `type` for each type KVM_CREATE_VM accepts. */
export function vmTypesMask(profile: KernelProfile): number {
  return profile.vmTypes.reduce((mask, type) => mask | (1 << type), 0)
}
