// KvmSystem: the /dev/kvm fd (system ioctls). Main thread only: none of these calls blocks.
#pragma once

#include <cstdint>

#include "unique-fd.h"

class KvmSystem {
 public:
  /** open("/dev/kvm", O_RDWR | O_CLOEXEC); throws SysError(errno, "open"). */
  KvmSystem();
  int fd() const;
  /** KVM_GET_API_VERSION */
  int apiVersion() const;
  /** KVM_CHECK_EXTENSION on /dev/kvm */
  int checkExtension(uint32_t cap) const;
  /** KVM_GET_VCPU_MMAP_SIZE */
  int vcpuMmapSize() const;
  /** KVM_CREATE_VM(type); returns the new VM fd (O_CLOEXEC is set by KVM). */
  int createVm(uint32_t type) const;
  void close();

 private:
  int checkedFd(const char* op) const;
  UniqueFd fd_;
};
