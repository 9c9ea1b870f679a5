// include/uapi/linux/kvm.h: struct kvm_enable_cap, the argument of KVM_ENABLE_CAP
// (_IOW(KVMIO, 0xa3, 104 bytes)). The KVM Userfault RFC enabled KVM_CAP_USERFAULT through it with
// args[0] = KVM_USERFAULT_ENABLE/DISABLE and args[1] = an eventfd (series.ts); v1-v3 answer EINVAL.
// Source: shared/reference/upstream-selftests.md §0.3, §F.1.

import { decodeStruct, defineLayout, encodeStruct, type StructInput, type StructValue } from './layout.ts'

export const kvm_enable_cap = defineLayout('kvm_enable_cap', 104, {
  cap: { offset: 0, type: 'u32' }, //                 __u32 cap;
  flags: { offset: 4, type: 'u32' }, //               __u32 flags;
  args: { offset: 8, type: 'u64', count: 4 }, //      __u64 args[4];
  pad: { offset: 40, type: 'u8', count: 64 }, //      __u8  pad[64];
})

export type KvmEnableCap = StructValue<typeof kvm_enable_cap>
export type KvmEnableCapInput = StructInput<typeof kvm_enable_cap>

export function encodeEnableCap(value: KvmEnableCapInput): Uint8Array {
  return encodeStruct(kvm_enable_cap, value)
}

export function decodeEnableCap(bytes: Uint8Array, offset = 0): KvmEnableCap {
  return decodeStruct(kvm_enable_cap, bytes, offset)
}
