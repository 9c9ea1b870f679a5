#include "host-mapping.h"

#include <sys/mman.h>
#include <unistd.h>

#include "sys-error.h"

namespace {

constexpr uint64_t kHugePmd = 2ull << 20;

// mmap(2) that maps the C++ error convention onto SysError.
uintptr_t mapOrThrow(uint64_t len, int prot, int flags, int fd, uint64_t off) {
  if (len > SIZE_MAX) throw SysError(ENOMEM, "mmap");
  void* p = ::mmap(nullptr, static_cast<size_t>(len), prot, flags, fd, static_cast<off_t>(off));
  if (p == MAP_FAILED) throw SysError::last("mmap");
  return reinterpret_cast<uintptr_t>(p);
}

// Anonymous memory aligned to 2 MiB so that THP can back it (upstream vm_userspace_mem_region_add
// over-allocates by the alignment the same way). Trims the slack so the mapping is exactly `size`.
uintptr_t mapAligned(uint64_t size, int extraFlags) {
  if (size == 0 || size > UINT64_MAX - kHugePmd) throw SysError(EINVAL, "mmap");
  uintptr_t raw = mapOrThrow(size + kHugePmd, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | extraFlags, -1, 0);
  uintptr_t aligned = (raw + kHugePmd - 1) & ~(kHugePmd - 1);
  long page = sysconf(_SC_PAGESIZE);
  uintptr_t end = aligned + ((size + page - 1) & ~static_cast<uint64_t>(page - 1));
  if (aligned > raw) ::munmap(reinterpret_cast<void*>(raw), aligned - raw);
  if (raw + size + kHugePmd > end) ::munmap(reinterpret_cast<void*>(end), raw + size + kHugePmd - end);
  if (::madvise(reinterpret_cast<void*>(aligned), size, MADV_HUGEPAGE) != 0) {
    SysError e = SysError::last("madvise");
    ::munmap(reinterpret_cast<void*>(aligned), end - aligned);
    throw e;
  }
  return aligned;
}

}  // namespace

std::shared_ptr<HostMapping> HostMapping::create(uint64_t size, const std::string& backing, bool noreserve) {
  std::shared_ptr<HostMapping> m(new HostMapping());
  m->size_ = size;
  m->backing_ = backing;
  const int rw = PROT_READ | PROT_WRITE;
  const int nr = noreserve ? MAP_NORESERVE : 0;
  if (backing == "anonymous") {
    m->addr_ = mapOrThrow(size, rw, MAP_PRIVATE | MAP_ANONYMOUS | nr, -1, 0);
  } else if (backing == "anonymous_thp") {
    m->addr_ = mapAligned(size, nr);
  } else if (backing == "anonymous_hugetlb") {
    m->addr_ = mapOrThrow(size, rw, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | nr, -1, 0);
  } else if (backing == "shmem" || backing == "shared_hugetlb") {
    unsigned flags = MFD_CLOEXEC | (backing == "shared_hugetlb" ? MFD_HUGETLB : 0);
    int fd = ::memfd_create(backing == "shmem" ? "kvmconf-shmem" : "kvmconf-hugetlb", flags);
    if (fd < 0) throw SysError::last("memfd_create");
    auto file = std::make_shared<UniqueFd>(fd);
    if (size > static_cast<uint64_t>(INT64_MAX)) throw SysError(EINVAL, "ftruncate");
    if (::ftruncate(fd, static_cast<off_t>(size)) != 0) throw SysError::last("ftruncate");
    m->addr_ = mapOrThrow(size, rw, MAP_SHARED | nr, fd, 0);
    m->shared_ = true;
    m->fdNumber_ = fd;
    m->ownedFile_ = file;
    m->file_ = file;
  } else {
    throw SysError(EINVAL, "mmap");
  }
  return m;
}

// `align` (a power of two, or 0 for none): reserve length + align of PROT_NONE address space, map the
// file over its first aligned address with MAP_FIXED, and give the slack back.
std::shared_ptr<HostMapping> HostMapping::ofFile(const std::shared_ptr<UniqueFd>& file, uint64_t length,
                                                 uint64_t offset, bool shared, uint64_t align,
                                                 const std::string& backing) {
  if (!file || !file->valid()) throw SysError(EBADF, "mmap");
  std::shared_ptr<HostMapping> m(new HostMapping());
  const int prot = PROT_READ | PROT_WRITE;
  const int flags = shared ? MAP_SHARED : MAP_PRIVATE;
  if (align <= static_cast<uint64_t>(sysconf(_SC_PAGESIZE))) {
    m->addr_ = mapOrThrow(length, prot, flags, file->get(), offset);
  } else {
    if (length == 0 || length > UINT64_MAX - align) throw SysError(EINVAL, "mmap");
    uintptr_t raw = mapOrThrow(length + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    uintptr_t aligned = (raw + align - 1) & ~(align - 1);
    void* p = ::mmap(reinterpret_cast<void*>(aligned), static_cast<size_t>(length), prot, flags | MAP_FIXED,
                     file->get(), static_cast<off_t>(offset));
    if (p == MAP_FAILED) {
      SysError e = SysError::last("mmap");
      ::munmap(reinterpret_cast<void*>(raw), length + align);
      throw e;
    }
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t end = aligned + ((length + page - 1) & ~static_cast<uint64_t>(page - 1));
    if (aligned > raw) ::munmap(reinterpret_cast<void*>(raw), aligned - raw);
    if (raw + length + align > end) ::munmap(reinterpret_cast<void*>(end), raw + length + align - end);
    m->addr_ = aligned;
  }
  m->size_ = length;
  m->fileOffset_ = offset;
  m->shared_ = shared;
  m->backing_ = backing;
  m->fdNumber_ = file->get();
  m->file_ = file;
  return m;
}

std::shared_ptr<HostMapping> HostMapping::alias() const {
  std::shared_ptr<UniqueFd> file = file_.lock();
  if (!shared_) throw SysError(EINVAL, "mmap");
  if (!file || !file->valid()) throw SysError(EBADF, "mmap");
  std::shared_ptr<HostMapping> m(new HostMapping());
  m->addr_ = mapOrThrow(size_, PROT_READ | PROT_WRITE, MAP_SHARED, file->get(), fileOffset_);
  m->size_ = size_;
  m->fileOffset_ = fileOffset_;
  m->shared_ = true;
  m->backing_ = backing_;
  m->fdNumber_ = fdNumber_;
  m->ownedFile_ = ownedFile_;
  m->file_ = file_;
  return m;
}

int HostMapping::madvise(uint64_t off, uint64_t len, int advice) const {
  return ::madvise(reinterpret_cast<void*>(addr_ + off), static_cast<size_t>(len), advice) == 0 ? 0 : errno;
}

void HostMapping::close() { ownedFile_.reset(); }

// Main thread, or the pool thread whose access held the last reference.
HostMapping::~HostMapping() {
  if (addr_ != 0) ::munmap(reinterpret_cast<void*>(addr_), static_cast<size_t>(size_));
}
