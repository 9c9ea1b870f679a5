// UserfaultBitmap: the KVM Userfault series' per-memslot bitmap (upstream-selftests.md §F.3): ceil(npages/64)
// 64-bit words, bit n%64 of word n/64 for page base_gfn + n, in a page-aligned anonymous mapping that KVM
// reads with atomic loads while vCPUs run. Main thread; the word updates are atomic so that a future
// resolver thread can share them.
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
  bool test(uint64_t n) const;
  void fill(bool value);
  std::vector<uint64_t> words() const;
  void close();

 private:
  uint64_t* checkedWords(const char* op) const;
  uint64_t npages_;
  size_t nwords_;
  size_t mapBytes_;
  uint64_t* words_ = nullptr;
};
