// UserfaultBitmap: the KVM Userfault series' per-memslot bitmap (upstream-selftests.md §F.3): ceil(npages/64)
// 64-bit words, bit n%64 of word n/64 for page base_gfn + n, in a page-aligned anonymous mapping that KVM
// reads with atomic loads while vCPUs run. Main thread, except clearRelease(), which a demand-paging
// run's vCPU threads call under -k (every word update is atomic).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

class UserfaultBitmap {
 public:
  explicit UserfaultBitmap(uint64_t npages);
  ~UserfaultBitmap();
  UserfaultBitmap(const UserfaultBitmap&) = delete;
  UserfaultBitmap& operator=(const UserfaultBitmap&) = delete;

  uintptr_t addr() const { return reinterpret_cast<uintptr_t>(words_); }
  uint64_t npages() const { return npages_; }
  void set(uint64_t n);
  /** Release ordering: the resolver's page contents are visible before KVM sees the bit clear. */
  void clear(uint64_t n);
  /**
   * clear() for a resolver thread that holds a reference (a demand-paging run under -k): no closed
   * check, since close() leaves the words mapped until the last reference is gone.
   */
  void clearRelease(uint64_t n) { __atomic_fetch_and(&words_[n / 64], ~(1ull << (n % 64)), __ATOMIC_RELEASE); }
  bool test(uint64_t n) const;
  void fill(bool value);
  std::vector<uint64_t> words() const;
  /** Refuses further calls (EBADF); the words stay mapped until the last reference is dropped. */
  void close();

 private:
  uint64_t* checkedWords(const char* op) const;
  uint64_t npages_;
  size_t nwords_;
  size_t mapBytes_;
  uint64_t* words_ = nullptr;
  bool closed_ = false;
};
