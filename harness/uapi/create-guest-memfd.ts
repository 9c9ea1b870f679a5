// include/uapi/linux/kvm.h: struct kvm_create_guest_memfd, the argument of KVM_CREATE_GUEST_MEMFD
// (_IOWR(KVMIO, 0xd4, 64 bytes)). `flags` takes GUEST_MEMFD_FLAG_* (kvm.ts). `reserved` is a member
// rather than anonymous padding because Vm.createGuestMemfd() (harness/backend.ts) lets a test fill it.
// Source: shared/reference/upstream-selftests.md §0.4, §G.

import { decodeStruct, defineLayout, encodeStruct, type StructInput, type StructValue } from './layout.ts'

export const kvm_create_guest_memfd = defineLayout('kvm_create_guest_memfd', 64, {
  size: { offset: 0, type: 'u64' }, //                    __u64 size;
  flags: { offset: 8, type: 'u64' }, //                   __u64 flags;
  reserved: { offset: 16, type: 'u64', count: 6 }, //     __u64 reserved[6];
})

export type KvmCreateGuestMemfd = StructValue<typeof kvm_create_guest_memfd>
export type KvmCreateGuestMemfdInput = StructInput<typeof kvm_create_guest_memfd>

export function encodeCreateGuestMemfd(value: KvmCreateGuestMemfdInput): Uint8Array {
  return encodeStruct(kvm_create_guest_memfd, value)
}

export function decodeCreateGuestMemfd(bytes: Uint8Array, offset = 0): KvmCreateGuestMemfd {
  return decodeStruct(kvm_create_guest_memfd, bytes, offset)
}
