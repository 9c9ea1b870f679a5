#include "page-resolver.h"

#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>

#include "sys-error.h"

PageResolver::PageResolver(Mode mode, uintptr_t regionHva, uint64_t regionSize, uint64_t unit)
    : mode_(mode), regionHva_(regionHva), regionSize_(regionSize), unit_(unit) {
  prototypeMap_ = static_cast<size_t>(unit);
  void* p = ::mmap(nullptr, prototypeMap_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw SysError::last("mmap");
  prototype_ = static_cast<uint8_t*>(p);
  memset(prototype_, 0xab, prototypeMap_);
  size_t n = static_cast<size_t>(regionSize / unit);
  perUnit_.reset(new std::atomic<uint8_t>[n]);
  for (size_t i = 0; i < n; i++) perUnit_[i].store(0, std::memory_order_relaxed);
}

PageResolver::~PageResolver() {
  if (prototype_ != nullptr) ::munmap(prototype_, prototypeMap_);
}

const char* PageResolver::op() const { return mode_ == Mode::Minor ? "UFFDIO_CONTINUE" : "UFFDIO_COPY"; }

// Any thread (a reader, or a vCPU thread resolving a KVM Userfault exit early).
int PageResolver::resolve(int uffd, uintptr_t addr, bool wake, const char** failedOp) {
  // The kernel reports the faulting 4 KiB page; a unit is the backing's page (2 MiB for THP), so
  // resolve the whole unit holding it, as a hugetlb fault would report it.
  uint64_t index = (addr - regionHva_) / unit_;
  uintptr_t start = regionHva_ + index * unit_;
  int r;
  if (mode_ == Mode::Minor) {
    struct uffdio_continue c;
    memset(&c, 0, sizeof c);
    c.range.start = start;
    c.range.len = unit_;
    c.mode = wake ? 0 : UFFDIO_CONTINUE_MODE_DONTWAKE;
    r = ::ioctl(uffd, UFFDIO_CONTINUE, &c);
  } else {
    struct uffdio_copy c;
    memset(&c, 0, sizeof c);
    c.dst = start;
    c.src = reinterpret_cast<uintptr_t>(prototype_);
    c.len = unit_;
    c.mode = wake ? 0 : UFFDIO_COPY_MODE_DONTWAKE;
    r = ::ioctl(uffd, UFFDIO_COPY, &c);
  }
  if (r == 0) {
    resolved.fetch_add(1, std::memory_order_relaxed);
    std::atomic<uint8_t>& n = perUnit_[index];
    uint8_t seen = n.load(std::memory_order_relaxed);
    while (seen < 2 && !n.compare_exchange_weak(seen, static_cast<uint8_t>(seen + 1), std::memory_order_relaxed)) {
    }
    return 0;
  }
  int err = errno;
  if (err != EEXIST) {
    *failedOp = op();
    return err;
  }
  eexist.fetch_add(1, std::memory_order_relaxed);
  if (wake) {
    // A failed COPY/CONTINUE wakes nobody; whoever resolved the unit may have woken its own waiters
    // before this fault queued (the series' resolve_uffd_page_request()).
    struct uffdio_range range{start, unit_};
    if (::ioctl(uffd, UFFDIO_WAKE, &range) != 0) {
      *failedOp = "UFFDIO_WAKE";
      return errno;
    }
    wakes.fetch_add(1, std::memory_order_relaxed);
  }
  return 0;
}

// A vCPU thread: the -k resolver of a run without userfaultfd (upstream: memcpy of the prototype).
void PageResolver::populate(uintptr_t pageHva, uint64_t pageSize) {
  memcpy(reinterpret_cast<void*>(pageHva), prototype_, static_cast<size_t>(pageSize < unit_ ? pageSize : unit_));
}

void PageResolver::unitCounts(uint64_t* once, uint64_t* more, uint64_t* never) const {
  *once = *more = *never = 0;
  for (uint64_t i = 0; i < units(); i++) {
    uint8_t n = perUnit_[i].load(std::memory_order_relaxed);
    if (n == 0) ++*never;
    else if (n == 1) ++*once;
    else ++*more;
  }
}
