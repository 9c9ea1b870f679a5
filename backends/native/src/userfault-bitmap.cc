#include "userfault-bitmap.h"

#include <sys/mman.h>
#include <unistd.h>

#include "sys-error.h"

UserfaultBitmap::UserfaultBitmap(uint64_t npages) : npages_(npages) {
  nwords_ = static_cast<size_t>((npages + 63) / 64);
  size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  size_t bytes = nwords_ * sizeof(uint64_t);
  mapBytes_ = bytes == 0 ? page : (bytes + page - 1) / page * page;
  void* p = ::mmap(nullptr, mapBytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw SysError::last("mmap");
  words_ = static_cast<uint64_t*>(p);
}

UserfaultBitmap::~UserfaultBitmap() {
  if (words_ != nullptr) ::munmap(words_, mapBytes_);
}

uint64_t* UserfaultBitmap::checkedWords(const char* op) const {
  if (closed_) throw SysError(EBADF, op);
  return words_;
}

void UserfaultBitmap::set(uint64_t n) {
  __atomic_fetch_or(&checkedWords("set")[n / 64], 1ull << (n % 64), __ATOMIC_RELEASE);
}

void UserfaultBitmap::clear(uint64_t n) {
  __atomic_fetch_and(&checkedWords("clear")[n / 64], ~(1ull << (n % 64)), __ATOMIC_RELEASE);
}

bool UserfaultBitmap::test(uint64_t n) const {
  return (__atomic_load_n(&checkedWords("test")[n / 64], __ATOMIC_ACQUIRE) >> (n % 64)) & 1;
}

void UserfaultBitmap::fill(bool value) {
  uint64_t* w = checkedWords("fill");
  for (size_t i = 0; i < nwords_; i++) {
    uint64_t bits = ~0ull;
    // Bits past npages stay clear so that words() equals what a kernel-side reader would compute.
    if (i == nwords_ - 1 && npages_ % 64 != 0) bits = (1ull << (npages_ % 64)) - 1;
    __atomic_store_n(&w[i], value ? bits : 0ull, __ATOMIC_RELEASE);
  }
}

std::vector<uint64_t> UserfaultBitmap::words() const {
  const uint64_t* w = checkedWords("words");
  std::vector<uint64_t> out(nwords_);
  for (size_t i = 0; i < nwords_; i++) out[i] = __atomic_load_n(&w[i], __ATOMIC_ACQUIRE);
  return out;
}

void UserfaultBitmap::close() { closed_ = true; }
