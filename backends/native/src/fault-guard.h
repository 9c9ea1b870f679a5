// FaultGuard: host accesses to a mapping that turn SIGBUS/SIGSEGV into a return value.
//
// One process-wide handler for SIGBUS and SIGSEGV, installed once, checks a per-thread pointer: when the
// faulting thread is inside a guarded access it records the signal and the address and siglongjmps
// back; otherwise it chains to the handler that was there before (V8's WebAssembly trap handler and
// Node's own), so faults elsewhere behave exactly as without the addon.
//
// The accesses run on blocking-pool threads (see blocking-pool.h), never on the main thread: an access
// to a userfaultfd-registered page waits for a resolver, which may be JavaScript on the main thread.
#pragma once

#include <cstddef>
#include <cstdint>

struct HostFaultInfo {
  /** 0 when the access completed, else SIGBUS or SIGSEGV. */
  int signo;
  /** The first byte of the access that lies in the faulting page. */
  uintptr_t addr;
};

class FaultGuard {
 public:
  /** Installs the handler once per process (main thread, at addon load). Returns errno or 0. */
  static int install();

  // Each runs on the calling thread. The range [addr, addr + len) is walked page by page in order, so
  // the reported address is that of the first page that faulted.
  static HostFaultInfo read(uintptr_t addr, void* dst, size_t len);
  static HostFaultInfo write(uintptr_t addr, const void* src, size_t len);
  static HostFaultInfo fill(uintptr_t addr, size_t len, uint8_t byte);
  /** Sets *mismatch to the offset of the first byte != `byte`, or to -1. */
  static HostFaultInfo findMismatch(uintptr_t addr, size_t len, uint8_t byte, int64_t* mismatch);
};
