// The signal that kicks a vCPU thread out of KVM_RUN.
//
// SIGUSR1 with a handler that does nothing, installed without SA_RESTART: the signal's only job is to
// make KVM_RUN return -1/EINTR (with exit_reason KVM_EXIT_INTR) on the thread it is sent to with
// pthread_kill. Node uses SIGUSR1 to start its inspector, so a SIGUSR1 that lands on any thread that is
// not a vCPU thread is passed on to the handler that was installed before ours.
#pragma once

#include <signal.h>

#include <cerrno>
#include <cstring>
#include <mutex>

namespace kick_signal {

constexpr int kSignal = SIGUSR1;

/** True on vCPU threads (set by VcpuThread's thread function before its first KVM_RUN). */
inline thread_local volatile sig_atomic_t tOnVcpuThread __attribute__((tls_model("initial-exec"))) = 0;
inline struct sigaction gPrevious;
inline std::once_flag gOnce;
inline int gErr = 0;

// Runs in signal context on whichever thread received SIGUSR1.
inline void onKick(int sig, siginfo_t* si, void* uctx) {
  if (tOnVcpuThread) return;  // interrupting KVM_RUN was the point
  if (gPrevious.sa_flags & SA_SIGINFO) {
    if (gPrevious.sa_sigaction != nullptr) gPrevious.sa_sigaction(sig, si, uctx);
  } else if (gPrevious.sa_handler != SIG_DFL && gPrevious.sa_handler != SIG_IGN) {
    gPrevious.sa_handler(sig);
  }
  // SIG_DFL would terminate the process; a stray SIGUSR1 while the addon is loaded is dropped instead.
}

/** Installs the handler once per process (main thread). Returns 0 or errno. */
inline int install() {
  std::call_once(gOnce, [] {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = onKick;
    sa.sa_flags = SA_SIGINFO;  // deliberately no SA_RESTART: KVM_RUN must come back with EINTR
    sigemptyset(&sa.sa_mask);
    if (sigaction(kSignal, &sa, &gPrevious) != 0) gErr = errno;
  });
  return gErr;
}

}  // namespace kick_signal
