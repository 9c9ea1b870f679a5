// Uffd: a userfaultfd (from the syscall or /dev/userfaultfd) and its ioctls. Main thread: UFFDIO_*
// resolve or register without waiting, and readEvents() never blocks (see uffd.cc). Handler threads
// that wait on faults belong to uffd-handler.{h,cc} (demand paging), not here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "unique-fd.h"

class Uffd {
 public:
  /** userfaultfd(2) when `viaDev` is false, else USERFAULTFD_IOC_NEW on /dev/userfaultfd. */
  Uffd(bool viaDev, int flags);

  struct ApiResult {
    uint64_t api;
    uint64_t features;
    uint64_t ioctls;
  };
  struct Event {
    uint8_t event;
    uint64_t address;  // pagefault only
    uint64_t flags;    // pagefault only
  };

  int fd() const;
  ApiResult api(uint64_t features);
  /** Returns the ioctls the range allows. */
  uint64_t registerRange(uint64_t start, uint64_t len, uint64_t mode);
  void unregisterRange(uint64_t start, uint64_t len);
  /** These return the bytes done (the struct's out field). */
  int64_t copy(uint64_t dst, const void* src, uint64_t len, uint64_t mode);
  int64_t zeropage(uint64_t start, uint64_t len, uint64_t mode);
  int64_t continueRange(uint64_t start, uint64_t len, uint64_t mode);
  void wake(uint64_t start, uint64_t len);
  std::vector<Event> readEvents(size_t max);
  void close();

 private:
  int checkedFd(const char* op) const;
  UniqueFd fd_;
};
