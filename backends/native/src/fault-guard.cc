#include "fault-guard.h"

#include <setjmp.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>

namespace {

struct GuardFrame {
  sigjmp_buf jb;
  volatile int signo;
  volatile uintptr_t addr;
};

// Initial-exec TLS: a plain load in the signal handler, never a lazy allocation (global-dynamic TLS in a
// dlopen'ed object may call malloc on a thread's first access, which a signal handler must not do).
__attribute__((tls_model("initial-exec"))) thread_local GuardFrame* volatile tFrame = nullptr;

struct sigaction gPrevBus;
struct sigaction gPrevSegv;
std::once_flag gInstallOnce;
int gInstallErr = 0;
size_t gPage = 4096;

// Runs on whichever thread faulted, in signal context.
void chain(int sig, siginfo_t* si, void* uctx) {
  const struct sigaction& prev = sig == SIGBUS ? gPrevBus : gPrevSegv;
  if (prev.sa_flags & SA_SIGINFO) {
    if (prev.sa_sigaction != nullptr) prev.sa_sigaction(sig, si, uctx);
    return;
  }
  if (prev.sa_handler == SIG_IGN || prev.sa_handler == SIG_DFL) {
    // Not ours and nobody else's: die as if the addon were not loaded. The signal is blocked while
    // this handler runs, so raise() leaves it pending and it kills the process on return.
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  prev.sa_handler(sig);
}

// Runs on whichever thread faulted, in signal context.
void onFault(int sig, siginfo_t* si, void* uctx) {
  GuardFrame* f = tFrame;
  if (f != nullptr) {
    tFrame = nullptr;
    f->signo = sig;
    f->addr = reinterpret_cast<uintptr_t>(si->si_addr);
    siglongjmp(f->jb, 1);
  }
  chain(sig, si, uctx);
}

// Walks [addr, addr+len) in page-bounded chunks under the guard; `chunk(offset, n)` does the access
// and returns false to stop early. Runs on the calling (pool) thread.
template <class F>
__attribute__((noinline)) HostFaultInfo guarded(uintptr_t addr, size_t len, F chunk) {
  GuardFrame frame;
  frame.signo = 0;
  frame.addr = 0;
  volatile size_t pos = 0;
  if (sigsetjmp(frame.jb, 1) != 0) {
    // siglongjmp restored the signal mask saved above; tFrame was cleared by the handler.
    return HostFaultInfo{frame.signo, addr + pos};
  }
  tFrame = &frame;
  while (pos < len) {
    uintptr_t a = addr + pos;
    size_t n = gPage - (a % gPage);
    if (n > len - pos) n = len - pos;
    if (!chunk(static_cast<size_t>(pos), n)) break;
    pos = pos + n;
  }
  tFrame = nullptr;
  return HostFaultInfo{0, 0};
}

}  // namespace

int FaultGuard::install() {
  std::call_once(gInstallOnce, [] {
    long ps = sysconf(_SC_PAGESIZE);
    if (ps > 0) gPage = static_cast<size_t>(ps);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = onFault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, &gPrevBus) != 0 || sigaction(SIGSEGV, &sa, &gPrevSegv) != 0) {
      gInstallErr = errno;
    }
  });
  return gInstallErr;
}

HostFaultInfo FaultGuard::read(uintptr_t addr, void* dst, size_t len) {
  auto* out = static_cast<uint8_t*>(dst);
  return guarded(addr, len, [&](size_t off, size_t n) {
    memcpy(out + off, reinterpret_cast<const void*>(addr + off), n);
    return true;
  });
}

HostFaultInfo FaultGuard::write(uintptr_t addr, const void* src, size_t len) {
  auto* in = static_cast<const uint8_t*>(src);
  return guarded(addr, len, [&](size_t off, size_t n) {
    memcpy(reinterpret_cast<void*>(addr + off), in + off, n);
    return true;
  });
}

HostFaultInfo FaultGuard::fill(uintptr_t addr, size_t len, uint8_t byte) {
  return guarded(addr, len, [&](size_t off, size_t n) {
    memset(reinterpret_cast<void*>(addr + off), byte, n);
    return true;
  });
}

HostFaultInfo FaultGuard::findMismatch(uintptr_t addr, size_t len, uint8_t byte, int64_t* mismatch) {
  *mismatch = -1;
  const uint64_t pattern = 0x0101010101010101ull * byte;
  return guarded(addr, len, [&](size_t off, size_t n) {
    const auto* p = reinterpret_cast<const uint8_t*>(addr + off);
    size_t i = 0;
    // Eight bytes at a time while aligned words match, then byte by byte to find the exact offset.
    while (i < n && (reinterpret_cast<uintptr_t>(p + i) & 7) != 0 && p[i] == byte) i++;
    while (i + 8 <= n && *reinterpret_cast<const uint64_t*>(p + i) == pattern) i += 8;
    for (; i < n; i++) {
      if (p[i] != byte) {
        *mismatch = static_cast<int64_t>(off + i);
        return false;
      }
    }
    return true;
  });
}
