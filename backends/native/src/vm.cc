#include "vm.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "sys-error.h"
#include "vcpu-thread.h"

Vm::Vm(UniqueFd fd, uint32_t type, int vcpuMmapSize) : fd_(std::move(fd)), type_(type), vcpuMmapSize_(vcpuMmapSize) {}

Vm::~Vm() { close(); }

int Vm::checkedFd(const char* op) const {
  if (!fd_.valid()) throw SysError(EBADF, op);
  return fd_.get();
}

int Vm::fd() const { return checkedFd("fd"); }

int Vm::checkExtension(uint32_t cap) const {
  int r = ::ioctl(checkedFd("KVM_CHECK_EXTENSION"), KVM_CHECK_EXTENSION, static_cast<unsigned long>(cap));
  if (r < 0) throw SysError::last("KVM_CHECK_EXTENSION");
  return r;
}

int Vm::enableCap(uint32_t cap, uint32_t flags, const uint64_t args[4]) {
  struct kvm_enable_cap ec;
  memset(&ec, 0, sizeof ec);
  ec.cap = cap;
  ec.flags = flags;
  for (int i = 0; i < 4; i++) ec.args[i] = args[i];
  int r = ::ioctl(checkedFd("KVM_ENABLE_CAP"), KVM_ENABLE_CAP, &ec);
  if (r < 0) throw SysError::last("KVM_ENABLE_CAP");
  return r;
}

void Vm::trackSlot(uint32_t slot, uint64_t size) {
  long page = sysconf(_SC_PAGESIZE);
  if (size == 0) {
    slotPages_.erase(slot);
  } else {
    slotPages_[slot] = size / static_cast<uint64_t>(page);
  }
}

void Vm::setUserMemoryRegion(const struct kvm_userspace_memory_region& r) {
  if (::ioctl(checkedFd("KVM_SET_USER_MEMORY_REGION"), KVM_SET_USER_MEMORY_REGION, &r) != 0) {
    throw SysError::last("KVM_SET_USER_MEMORY_REGION");
  }
  trackSlot(r.slot, r.memory_size);
}

void Vm::setUserMemoryRegion2(const kvmuapi::UserspaceMemoryRegion2& r) {
  if (::ioctl(checkedFd("KVM_SET_USER_MEMORY_REGION2"), kvmuapi::SET_USER_MEMORY_REGION2, &r) != 0) {
    throw SysError::last("KVM_SET_USER_MEMORY_REGION2");
  }
  trackSlot(r.slot, r.memory_size);
}

int Vm::createGuestMemfd(const kvmuapi::CreateGuestMemfd& args) {
  kvmuapi::CreateGuestMemfd copy = args;  // _IOWR: the kernel may write back
  int r = ::ioctl(checkedFd("KVM_CREATE_GUEST_MEMFD"), kvmuapi::CREATE_GUEST_MEMFD, &copy);
  if (r < 0) throw SysError::last("KVM_CREATE_GUEST_MEMFD");
  return r;
}

void Vm::setMemoryAttributes(const kvmuapi::MemoryAttributes& attrs) {
  if (::ioctl(checkedFd("KVM_SET_MEMORY_ATTRIBUTES"), kvmuapi::SET_MEMORY_ATTRIBUTES, &attrs) != 0) {
    throw SysError::last("KVM_SET_MEMORY_ATTRIBUTES");
  }
}

std::vector<uint64_t> Vm::getDirtyLog(uint32_t slot, uint64_t npages) {
  int fd = checkedFd("KVM_GET_DIRTY_LOG");
  // KVM copies ALIGN(slot npages, 64) / 8 bytes whatever the caller believes, so the buffer is sized
  // for the larger of the caller's count and the slot as this VM created it (never a heap overflow),
  // and it is mmap'ed so that a large count costs address space, not zeroing.
  auto it = slotPages_.find(slot);
  uint64_t known = it != slotPages_.end() ? it->second : 0;
  uint64_t pages = known > npages ? known : npages;
  if (pages > (1ull << 40)) throw SysError(ENOMEM, "KVM_GET_DIRTY_LOG");
  size_t bytes = static_cast<size_t>((pages + 63) / 64 + 1) * sizeof(uint64_t);
  void* buf = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (buf == MAP_FAILED) throw SysError::last("mmap");
  struct kvm_dirty_log log;
  memset(&log, 0, sizeof log);
  log.slot = slot;
  log.dirty_bitmap = buf;
  if (::ioctl(fd, KVM_GET_DIRTY_LOG, &log) != 0) {
    SysError e = SysError::last("KVM_GET_DIRTY_LOG");
    ::munmap(buf, bytes);
    throw e;
  }
  // The slot's own size when this VM created it (authoritative), else what the caller said.
  uint64_t outPages = known != 0 ? known : npages;
  const auto* words = static_cast<const uint64_t*>(buf);
  std::vector<uint64_t> out(words, words + (outPages + 63) / 64);
  ::munmap(buf, bytes);
  return out;
}

void Vm::setNrMmuPages(uint64_t pages) {
  if (::ioctl(checkedFd("KVM_SET_NR_MMU_PAGES"), KVM_SET_NR_MMU_PAGES, static_cast<unsigned long>(pages)) != 0) {
    throw SysError::last("KVM_SET_NR_MMU_PAGES");
  }
}

std::shared_ptr<VcpuThread> Vm::createVcpu(uint32_t id) {
  int vcpuFd = ::ioctl(checkedFd("KVM_CREATE_VCPU"), KVM_CREATE_VCPU, static_cast<unsigned long>(id));
  if (vcpuFd < 0) throw SysError::last("KVM_CREATE_VCPU");
  UniqueFd owned(vcpuFd);
  void* run = ::mmap(nullptr, static_cast<size_t>(vcpuMmapSize_), PROT_READ | PROT_WRITE, MAP_SHARED, vcpuFd, 0);
  if (run == MAP_FAILED) throw SysError::last("mmap");
  auto vcpu = std::make_shared<VcpuThread>(std::move(owned), id, static_cast<struct kvm_run*>(run),
                                           static_cast<size_t>(vcpuMmapSize_));
  vcpus_.push_back(vcpu);
  return vcpu;
}

void Vm::close() {
  for (auto& weak : vcpus_) {
    if (auto v = weak.lock()) v->close();
  }
  vcpus_.clear();
  fd_.reset();
}
