#include "kvm-system.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>

#include "sys-error.h"

KvmSystem::KvmSystem() {
  int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0) throw SysError::last("open");
  fd_ = UniqueFd(fd);
}

int KvmSystem::checkedFd(const char* op) const {
  if (!fd_.valid()) throw SysError(EBADF, op);
  return fd_.get();
}

int KvmSystem::fd() const { return checkedFd("fd"); }

int KvmSystem::apiVersion() const {
  int r = ::ioctl(checkedFd("KVM_GET_API_VERSION"), KVM_GET_API_VERSION, 0);
  if (r < 0) throw SysError::last("KVM_GET_API_VERSION");
  return r;
}

int KvmSystem::checkExtension(uint32_t cap) const {
  int r = ::ioctl(checkedFd("KVM_CHECK_EXTENSION"), KVM_CHECK_EXTENSION, static_cast<unsigned long>(cap));
  if (r < 0) throw SysError::last("KVM_CHECK_EXTENSION");
  return r;
}

int KvmSystem::vcpuMmapSize() const {
  int r = ::ioctl(checkedFd("KVM_GET_VCPU_MMAP_SIZE"), KVM_GET_VCPU_MMAP_SIZE, 0);
  if (r < 0) throw SysError::last("KVM_GET_VCPU_MMAP_SIZE");
  return r;
}

int KvmSystem::createVm(uint32_t type) const {
  int r = ::ioctl(checkedFd("KVM_CREATE_VM"), KVM_CREATE_VM, static_cast<unsigned long>(type));
  if (r < 0) throw SysError::last("KVM_CREATE_VM");
  return r;
}

void KvmSystem::close() { fd_.reset(); }
