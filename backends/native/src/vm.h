// Vm: a KVM VM fd and the objects created from it (vCPUs). Main thread only: the VM ioctls issued here
// return promptly (memslot updates wait for SRCU readers, which vCPUs leave when they exit to the host).
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "kvm-uapi.h"
#include "unique-fd.h"

class VcpuThread;

class Vm {
 public:
  Vm(UniqueFd fd, uint32_t type, int vcpuMmapSize);
  ~Vm();

  int fd() const;
  uint32_t type() const { return type_; }
  /** KVM_GET_VCPU_MMAP_SIZE: the bytes of each vCPU's kvm_run mapping. */
  int vcpuMmapSize() const { return vcpuMmapSize_; }
  /** KVM_CHECK_EXTENSION on the VM fd. */
  int checkExtension(uint32_t cap) const;
  /** KVM_ENABLE_CAP; returns the ioctl's value. */
  int enableCap(uint32_t cap, uint32_t flags, const uint64_t args[4]);
  /** KVM_SET_USER_MEMORY_REGION */
  void setUserMemoryRegion(const struct kvm_userspace_memory_region& r);
  /** KVM_SET_USER_MEMORY_REGION2, every byte as given. */
  void setUserMemoryRegion2(const kvmuapi::UserspaceMemoryRegion2& r);
  /** KVM_CREATE_GUEST_MEMFD; returns the new fd (without FD_CLOEXEC: GuestMemfd sets it). */
  int createGuestMemfd(const kvmuapi::CreateGuestMemfd& args);
  /** KVM_SET_MEMORY_ATTRIBUTES */
  void setMemoryAttributes(const kvmuapi::MemoryAttributes& attrs);
  /** KVM_GET_DIRTY_LOG: ceil(pages/64) words, pages being the slot's size if this VM created it, else `npages`. */
  std::vector<uint64_t> getDirtyLog(uint32_t slot, uint64_t npages);
  /** KVM_SET_NR_MMU_PAGES */
  void setNrMmuPages(uint64_t pages);
  /** KVM_CREATE_VCPU plus the mmap of its kvm_run. */
  std::shared_ptr<VcpuThread> createVcpu(uint32_t id);
  /** Closes the VM fd and every vCPU created from it. */
  void close();

 private:
  int checkedFd(const char* op) const;
  void trackSlot(uint32_t slot, uint64_t size);

  UniqueFd fd_;
  uint32_t type_;
  int vcpuMmapSize_;
  /** Pages of each memslot this VM fd created (for sizing dirty-log buffers). */
  std::unordered_map<uint32_t, uint64_t> slotPages_;
  std::vector<std::weak_ptr<VcpuThread>> vcpus_;
};
