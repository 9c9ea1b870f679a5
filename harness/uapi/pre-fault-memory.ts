// include/uapi/linux/kvm.h: struct kvm_pre_fault_memory, the in/out argument of the vCPU ioctl
// KVM_PRE_FAULT_MEMORY (_IOWR(KVMIO, 0xd5, 64 bytes)). On return `gpa` and `size` describe what is left
// of the range (api.rst §4.143), so the struct is decoded again after every call; `flags` must be 0.
// Source: shared/reference/upstream-selftests.md §0.4, §E.1.

import { decodeStruct, defineLayout, encodeStruct, type StructInput, type StructValue } from './layout.ts'

export const kvm_pre_fault_memory = defineLayout('kvm_pre_fault_memory', 64, {
  gpa: { offset: 0, type: 'u64' }, //                     __u64 gpa;      (in/out)
  size: { offset: 8, type: 'u64' }, //                    __u64 size;     (in/out)
  flags: { offset: 16, type: 'u64' }, //                  __u64 flags;    (in, must be 0)
  padding: { offset: 24, type: 'u64', count: 5 }, //      __u64 padding[5];
})

export type KvmPreFaultMemory = StructValue<typeof kvm_pre_fault_memory>
export type KvmPreFaultMemoryInput = StructInput<typeof kvm_pre_fault_memory>

export function encodePreFaultMemory(value: KvmPreFaultMemoryInput): Uint8Array {
  return encodeStruct(kvm_pre_fault_memory, value)
}

export function decodePreFaultMemory(bytes: Uint8Array, offset = 0): KvmPreFaultMemory {
  return decodeStruct(kvm_pre_fault_memory, bytes, offset)
}
