// include/uapi/linux/kvm.h: struct kvm_dirty_log, the argument of KVM_GET_DIRTY_LOG
// (_IOW(KVMIO, 0x42, 16 bytes)). The kernel copies the slot's dirty bitmap to the user pointer
// `dirty_bitmap`; in C that member is a union of `void *` and `__u64 padding2`, so it is a u64 on both
// 64-bit and 32-bit userspace. Source: include/uapi/linux/kvm.h.

import { decodeStruct, defineLayout, encodeStruct, type StructInput, type StructValue } from './layout.ts'

export const kvm_dirty_log = defineLayout('kvm_dirty_log', 16, {
  slot: { offset: 0, type: 'u32' }, //          __u32 slot;
  padding1: { offset: 4, type: 'u32' }, //      __u32 padding1;
  dirtyBitmap: { offset: 8, type: 'u64' }, //   union { void __user *dirty_bitmap; __u64 padding2; };
})

export type KvmDirtyLog = StructValue<typeof kvm_dirty_log>
export type KvmDirtyLogInput = StructInput<typeof kvm_dirty_log>

export function encodeDirtyLog(value: KvmDirtyLogInput): Uint8Array {
  return encodeStruct(kvm_dirty_log, value)
}

export function decodeDirtyLog(bytes: Uint8Array, offset = 0): KvmDirtyLog {
  return decodeStruct(kvm_dirty_log, bytes, offset)
}
