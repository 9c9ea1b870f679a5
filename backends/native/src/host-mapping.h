// HostMapping: one mmap(2) of host memory (anonymous, THP, hugetlb, shmem/memfd, or a guest_memfd).
//
// Created and closed on the main thread. The accesses (read/write/fill/findMismatch) run on
// blocking-pool threads under FaultGuard, and hold a shared_ptr to the mapping while they run, so the
// munmap in the destructor happens only after the last access returned.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "fault-guard.h"
#include "unique-fd.h"

class HostMapping {
 public:
  /**
   * mmap(2) of a new region of `backing` (upstream vm_mem_backing_src_type names); `noreserve` adds
   * MAP_NORESERVE (upstream maps KVM_CAP_NR_MEMSLOTS x 2 MiB that way). Main thread.
   */
  static std::shared_ptr<HostMapping> create(uint64_t size, const std::string& backing, bool noreserve);
  /**
   * mmap(2) of an open file, for guest_memfd: the mapping does not own `file`, it only refers to it
   * for alias(). Main thread.
   */
  static std::shared_ptr<HostMapping> ofFile(const std::shared_ptr<UniqueFd>& file, uint64_t length, uint64_t offset,
                                             bool shared, uint64_t align, const std::string& backing);
  ~HostMapping();
  HostMapping(const HostMapping&) = delete;
  HostMapping& operator=(const HostMapping&) = delete;

  uintptr_t addr() const { return addr_; }
  uint64_t size() const { return size_; }
  const std::string& backing() const { return backing_; }
  /** The file's fd number, or -1 for anonymous memory. */
  int fd() const { return fdNumber_; }

  /** A second MAP_SHARED mapping of the same file range (shared backings only). Main thread. */
  std::shared_ptr<HostMapping> alias() const;
  /**
   * madvise(2) over [off, off + len); returns 0 or errno. Pool thread: MADV_POPULATE_* faults pages in
   * and can wait on a userfaultfd resolver.
   */
  int madvise(uint64_t off, uint64_t len, int advice) const;
  /** Drops this mapping's share of its memfd; the munmap follows when the last access returns. */
  void close();

  // Pool threads.
  HostFaultInfo read(uint64_t off, void* dst, size_t len) const { return FaultGuard::read(addr_ + off, dst, len); }
  HostFaultInfo write(uint64_t off, const void* src, size_t len) const {
    return FaultGuard::write(addr_ + off, src, len);
  }
  HostFaultInfo fill(uint64_t off, size_t len, uint8_t b) const { return FaultGuard::fill(addr_ + off, len, b); }
  HostFaultInfo findMismatch(uint64_t off, size_t len, uint8_t b, int64_t* at) const {
    return FaultGuard::findMismatch(addr_ + off, len, b, at);
  }

 private:
  HostMapping() = default;
  uintptr_t addr_ = 0;
  uint64_t size_ = 0;
  uint64_t fileOffset_ = 0;
  bool shared_ = false;
  std::string backing_;
  int fdNumber_ = -1;
  /** memfd owned (with aliases) by shmem/shared_hugetlb mappings; empty otherwise. */
  std::shared_ptr<UniqueFd> ownedFile_;
  /** The file behind any file mapping, for alias(). */
  std::weak_ptr<UniqueFd> file_;
};
