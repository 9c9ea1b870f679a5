// PageResolver: how demand_paging_test resolves one fault of its region (upstream-selftests.md §A.2,
// "uffd fault handler", and the series' resolve_uffd_page_request(), §A.3), shared by the userfaultfd
// readers and the KVM Userfault resolver of one run.
//
// MISSING: UFFDIO_COPY of a unit of 0xAB bytes; MINOR: UFFDIO_CONTINUE over the unit (its page cache
// was filled beforehand). A unit is demand_paging_size, the backing's page size. EEXIST (another
// resolver was first) is tolerated; after a failed resolution of a real userfaultfd event the waiter is
// woken with UFFDIO_WAKE, since a failed COPY/CONTINUE wakes nobody.
//
// Threads: resolve() and the counters are used by any number of threads at once; everything else is
// set up before they start and read after they joined.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

class PageResolver {
 public:
  enum class Mode { None, Missing, Minor };

  /** `regionHva`/`regionSize`: the memslot's host memory; `unit`: a power of two dividing both. */
  PageResolver(Mode mode, uintptr_t regionHva, uint64_t regionSize, uint64_t unit);
  ~PageResolver();
  PageResolver(const PageResolver&) = delete;
  PageResolver& operator=(const PageResolver&) = delete;

  Mode mode() const { return mode_; }
  uint64_t unit() const { return unit_; }
  uint64_t units() const { return regionSize_ / unit_; }
  /** The ioctl resolve() issues, for errors: "UFFDIO_COPY" or "UFFDIO_CONTINUE". */
  const char* op() const;

  /**
   * Any thread. Resolves the unit holding `addr` through `uffd`. `wake` false adds DONTWAKE (the -k
   * resolver, which nobody waits on); true is a reader answering a fault, which issues UFFDIO_WAKE when
   * the resolution failed. Returns 0 (EEXIST included) or the errno of the failing ioctl (`*failedOp`).
   */
  int resolve(int uffd, uintptr_t addr, bool wake, const char** failedOp);

  /** The -k resolver without userfaultfd: copy the prototype over one host page (a normal host fault). */
  void populate(uintptr_t pageHva, uint64_t pageSize);

  std::atomic<uint64_t> resolved{0};
  std::atomic<uint64_t> eexist{0};
  std::atomic<uint64_t> wakes{0};

  /** After the resolvers stopped: how many units were resolved once, more than once, never. */
  void unitCounts(uint64_t* once, uint64_t* more, uint64_t* never) const;

 private:
  Mode mode_;
  uintptr_t regionHva_;
  uint64_t regionSize_;
  uint64_t unit_;
  /** `unit` bytes of 0xAB, page aligned (UFFDIO_COPY's source). */
  uint8_t* prototype_ = nullptr;
  size_t prototypeMap_ = 0;
  /** Successful resolutions per unit, saturating at 2 ("more than once"). */
  std::unique_ptr<std::atomic<uint8_t>[]> perUnit_;
};
