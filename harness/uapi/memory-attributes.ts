// include/uapi/linux/kvm.h: struct kvm_memory_attributes, the argument of KVM_SET_MEMORY_ATTRIBUTES
// (_IOW(KVMIO, 0xd2, 32 bytes)). `attributes` takes KVM_MEMORY_ATTRIBUTE_* (kvm.ts; the RFC of the KVM
// Userfault series added bit 4, series.ts); `flags` must be 0 (kvm_vm_ioctl_set_mem_attributes(): EINVAL).
// Source: shared/reference/upstream-selftests.md §0.4, §G.

import { decodeStruct, defineLayout, encodeStruct, type StructInput, type StructValue } from './layout.ts'

export const kvm_memory_attributes = defineLayout('kvm_memory_attributes', 32, {
  address: { offset: 0, type: 'u64' }, //     __u64 address;
  size: { offset: 8, type: 'u64' }, //        __u64 size;
  attributes: { offset: 16, type: 'u64' }, // __u64 attributes;
  flags: { offset: 24, type: 'u64' }, //      __u64 flags;
})

export type KvmMemoryAttributes = StructValue<typeof kvm_memory_attributes>
export type KvmMemoryAttributesInput = StructInput<typeof kvm_memory_attributes>

export function encodeMemoryAttributes(value: KvmMemoryAttributesInput): Uint8Array {
  return encodeStruct(kvm_memory_attributes, value)
}

export function decodeMemoryAttributes(bytes: Uint8Array, offset = 0): KvmMemoryAttributes {
  return decodeStruct(kvm_memory_attributes, bytes, offset)
}
