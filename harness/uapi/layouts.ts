// Every KVM struct layout in one import, for callers that want several: the tables live one struct per
// file beside this one (each naming its kernel header), the machinery in layout.ts.
// include/uapi/linux/kvm.h: kvm_userspace_memory_region, kvm_userspace_memory_region2,
// kvm_create_guest_memfd, kvm_pre_fault_memory, kvm_memory_attributes, kvm_enable_cap, kvm_dirty_log,
// kvm_run. struct uffd_msg is in userfaultfd.ts with the rest of its header.

export * from './layout.ts'
export * from './memory-region.ts'
export * from './create-guest-memfd.ts'
export * from './pre-fault-memory.ts'
export * from './memory-attributes.ts'
export * from './enable-cap.ts'
export * from './dirty-log.ts'
export * from './kvm-run.ts'
