// include/uapi/linux/kvm.h: struct kvm_userspace_memory_region (KVM_SET_USER_MEMORY_REGION) and
// struct kvm_userspace_memory_region2 (KVM_SET_USER_MEMORY_REGION2), as offset tables.
//
// kvm_userspace_memory_region2 is laid out as the KVM Userfault series (v1-v3) has it: `userfault_bitmap`
// takes the first of upstream's fourteen `pad2` words, leaving `pad2[13]` at 56..159 and the size at 160.
// On upstream the same bytes are pad2[0]. Upstream's kvm_set_memory_region() never reads pad2, so the
// series could take a word of it without changing the size or the ioctl number (0x40A0AE49).
// Member names follow harness/backend.ts (UserspaceMemoryRegion, UserspaceMemoryRegion2).
// Source: shared/reference/upstream-selftests.md §0.1, §0.4, §F.2.

import { decodeStruct, defineLayout, encodeStruct, type StructInput, type StructValue } from './layout.ts'

export const kvm_userspace_memory_region = defineLayout('kvm_userspace_memory_region', 32, {
  slot: { offset: 0, type: 'u32' }, //            __u32 slot;  (as_id << 16 | slot id)
  flags: { offset: 4, type: 'u32' }, //           __u32 flags;
  guestPhysAddr: { offset: 8, type: 'u64' }, //   __u64 guest_phys_addr;
  memorySize: { offset: 16, type: 'u64' }, //     __u64 memory_size;  (bytes)
  userspaceAddr: { offset: 24, type: 'u64' }, //  __u64 userspace_addr;  (start of the userspace allocation)
})

export const kvm_userspace_memory_region2 = defineLayout('kvm_userspace_memory_region2', 160, {
  slot: { offset: 0, type: 'u32' }, //             __u32 slot;
  flags: { offset: 4, type: 'u32' }, //            __u32 flags;
  guestPhysAddr: { offset: 8, type: 'u64' }, //    __u64 guest_phys_addr;
  memorySize: { offset: 16, type: 'u64' }, //      __u64 memory_size;
  userspaceAddr: { offset: 24, type: 'u64' }, //   __u64 userspace_addr;
  guestMemfdOffset: { offset: 32, type: 'u64' }, // __u64 guest_memfd_offset;
  guestMemfd: { offset: 40, type: 'u32' }, //      __u32 guest_memfd;
  pad1: { offset: 44, type: 'u32' }, //            __u32 pad1;
  userfaultBitmap: { offset: 48, type: 'u64' }, // __u64 userfault_bitmap;  (series; upstream: pad2[0])
  pad2: { offset: 56, type: 'u64', count: 13 }, // __u64 pad2[13];  (series; upstream: pad2[1..13])
})

export type KvmUserspaceMemoryRegion = StructValue<typeof kvm_userspace_memory_region>
export type KvmUserspaceMemoryRegionInput = StructInput<typeof kvm_userspace_memory_region>
export type KvmUserspaceMemoryRegion2 = StructValue<typeof kvm_userspace_memory_region2>
export type KvmUserspaceMemoryRegion2Input = StructInput<typeof kvm_userspace_memory_region2>

export function encodeUserspaceMemoryRegion(region: KvmUserspaceMemoryRegionInput): Uint8Array {
  return encodeStruct(kvm_userspace_memory_region, region)
}

export function decodeUserspaceMemoryRegion(bytes: Uint8Array, offset = 0): KvmUserspaceMemoryRegion {
  return decodeStruct(kvm_userspace_memory_region, bytes, offset)
}

export function encodeUserspaceMemoryRegion2(region: KvmUserspaceMemoryRegion2Input): Uint8Array {
  return encodeStruct(kvm_userspace_memory_region2, region)
}

export function decodeUserspaceMemoryRegion2(bytes: Uint8Array, offset = 0): KvmUserspaceMemoryRegion2 {
  return decodeStruct(kvm_userspace_memory_region2, bytes, offset)
}
