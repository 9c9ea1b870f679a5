// KVM UAPI the machine's /usr/include/linux/kvm.h (6.1) lacks: structs and ioctls up to 6.18, plus the
// KVM Userfault series' view of kvm_userspace_memory_region2 (userfault_bitmap at byte 48).
// Layouts: shared/reference/upstream-selftests.md §0.4 and §G; each is pinned by a static_assert.
#pragma once

#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <cstddef>
#include <cstdint>

namespace kvmuapi {

/** struct kvm_userspace_memory_region2 (6.8+), with pad2[0] named as the series names it. */
struct UserspaceMemoryRegion2 {
  uint32_t slot;
  uint32_t flags;
  uint64_t guest_phys_addr;
  uint64_t memory_size;
  uint64_t userspace_addr;
  uint64_t guest_memfd_offset;
  uint32_t guest_memfd;
  uint32_t pad1;
  uint64_t userfault_bitmap;  // upstream: pad2[0]
  uint64_t pad2[13];
};
static_assert(sizeof(UserspaceMemoryRegion2) == 160, "kvm_userspace_memory_region2 is 160 bytes");
static_assert(offsetof(UserspaceMemoryRegion2, userfault_bitmap) == 48, "userfault_bitmap at byte 48");

/** struct kvm_create_guest_memfd (6.8+). */
struct CreateGuestMemfd {
  uint64_t size;
  uint64_t flags;
  uint64_t reserved[6];
};
static_assert(sizeof(CreateGuestMemfd) == 64, "kvm_create_guest_memfd is 64 bytes");

/** struct kvm_memory_attributes (6.8+). */
struct MemoryAttributes {
  uint64_t address;
  uint64_t size;
  uint64_t attributes;
  uint64_t flags;
};
static_assert(sizeof(MemoryAttributes) == 32, "kvm_memory_attributes is 32 bytes");

/** struct kvm_pre_fault_memory (6.11+), in/out. */
struct PreFaultMemory {
  uint64_t gpa;
  uint64_t size;
  uint64_t flags;
  uint64_t padding[5];
};
static_assert(sizeof(PreFaultMemory) == 64, "kvm_pre_fault_memory is 64 bytes");

static_assert(sizeof(struct kvm_enable_cap) == 104, "kvm_enable_cap is 104 bytes");
static_assert(sizeof(struct kvm_userspace_memory_region) == 32, "kvm_userspace_memory_region is 32 bytes");

constexpr unsigned long SET_USER_MEMORY_REGION2 = _IOW(KVMIO, 0x49, UserspaceMemoryRegion2);
constexpr unsigned long CREATE_GUEST_MEMFD = _IOWR(KVMIO, 0xd4, CreateGuestMemfd);
constexpr unsigned long SET_MEMORY_ATTRIBUTES = _IOW(KVMIO, 0xd2, MemoryAttributes);
constexpr unsigned long PRE_FAULT_MEMORY = _IOWR(KVMIO, 0xd5, PreFaultMemory);
static_assert(PRE_FAULT_MEMORY == 0xC040AED5, "KVM_PRE_FAULT_MEMORY");
static_assert(SET_USER_MEMORY_REGION2 == 0x40A0AE49, "KVM_SET_USER_MEMORY_REGION2");
static_assert(CREATE_GUEST_MEMFD == 0xC040AED4, "KVM_CREATE_GUEST_MEMFD");
static_assert(SET_MEMORY_ATTRIBUTES == 0x4020AED2, "KVM_SET_MEMORY_ATTRIBUTES");
static_assert(KVM_ENABLE_CAP == 0x4068AEA3, "KVM_ENABLE_CAP");

// kvm_run (non-s390): offsets the old header's union lacks (memory_fault arrived in 6.8).
constexpr size_t RUN_IMMEDIATE_EXIT = 1;
constexpr size_t RUN_EXIT_REASON = 8;
constexpr size_t RUN_EXIT_UNION = 32;
constexpr uint32_t EXIT_MEMORY_FAULT = 39;
static_assert(offsetof(struct kvm_run, immediate_exit) == RUN_IMMEDIATE_EXIT, "kvm_run.immediate_exit");
static_assert(offsetof(struct kvm_run, exit_reason) == RUN_EXIT_REASON, "kvm_run.exit_reason");
static_assert(offsetof(struct kvm_run, mmio) == RUN_EXIT_UNION, "kvm_run exit union");

/** kvm_run.memory_fault (6.8+), at the exit union. */
struct MemoryFault {
  uint64_t flags;
  uint64_t gpa;
  uint64_t size;
};

}  // namespace kvmuapi
