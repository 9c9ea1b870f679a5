// SysError: a failed kernel call, carried as the errno number plus the operation's name.
//
// Every class under src/ throws this and nothing else for kernel failures; addon.cc turns it into a JS
// error with numeric `errno` and string `op`, and native.ts into a KvmError. No strerror text crosses.
#pragma once

#include <cerrno>
#include <exception>

class SysError : public std::exception {
 public:
  SysError(int err, const char* op) : err_(err), op_(op) {}
  /** Captures the current errno; call right after the failing syscall. */
  static SysError last(const char* op) { return SysError(errno, op); }
  int err() const { return err_; }
  const char* op() const { return op_; }
  const char* what() const noexcept override { return op_; }

 private:
  int err_;
  const char* op_;  // always a string literal
};
