// GuestMemfd: a file from KVM_CREATE_GUEST_MEMFD and the file operations the suites try on it.
// Main thread: none of these blocks (guest_memfd has no read/write paths, fallocate allocates pages).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "host-mapping.h"
#include "unique-fd.h"

class GuestMemfd {
 public:
  /** Takes ownership of `fd` and sets FD_CLOEXEC on it (KVM creates guest_memfd files without it). */
  GuestMemfd(UniqueFd fd, uint64_t flags);

  struct Stat {
    uint64_t size;
    uint64_t blockSize;
    uint64_t ino;
  };

  int fd() const;
  uint64_t flags() const { return flags_; }
  Stat stat() const;
  ssize_t read(void* buf, size_t len) const;
  ssize_t write(const void* buf, size_t len) const;
  ssize_t pread(void* buf, size_t len, uint64_t off) const;
  ssize_t pwrite(const void* buf, size_t len, uint64_t off) const;
  void fallocate(int mode, uint64_t off, uint64_t len) const;
  std::shared_ptr<HostMapping> mmap(uint64_t length, uint64_t offset, bool shared, uint64_t align) const;
  void close();

 private:
  int checkedFd(const char* op) const;
  std::shared_ptr<UniqueFd> file_;
  uint64_t flags_;
};
