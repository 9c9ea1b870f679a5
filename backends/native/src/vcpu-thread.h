// VcpuThread: a vCPU fd, its mmap'ed kvm_run, and the one std::thread that issues KVM_RUN on it.
//
// KVM_RUN blocks without bound (a guest loop, a userfaultfd wait), so it never runs on the main thread
// nor on libuv's pool. The thread starts on the first run(), sleeps between runs, and hands every exit
// to the `done` callback on its own thread (addon.cc forwards it through a thread-safe function).
// kick() sets kvm_run.immediate_exit and signals the thread (signal.h). close() never waits: a running
// thread releases the fd and kvm_run itself when KVM_RUN returns.
//
// Every other vCPU ioctl takes vcpu->mutex in the kernel, which KVM_RUN holds, so they are refused
// with EBUSY while a run is in flight instead of blocking the main thread.
#pragma once

#include <linux/kvm.h>
#include <pthread.h>

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "unique-fd.h"
#include "vcpu-exit.h"

class VcpuThread : public std::enable_shared_from_this<VcpuThread> {
 public:
  VcpuThread(UniqueFd fd, uint32_t id, struct kvm_run* run, size_t runSize);
  ~VcpuThread();

  struct RunInput {
    bool hasMmioData = false;
    std::vector<uint8_t> mmioData;
    bool hasIoData = false;
    std::vector<uint8_t> ioData;
  };
  using Done = std::function<void(const VcpuExit&)>;

  struct PreFaultResult {
    int ret;   // 0, or -1 with err
    int err;
    uint64_t gpa;   // as the kernel left the in/out struct
    uint64_t size;
  };
  using PreFaultDone = std::function<void(const PreFaultResult&)>;

  uint32_t id() const { return id_; }
  int fd();
  /** Main thread: queues one KVM_RUN; `done` is called once, on the vCPU thread (or here on EBADF). */
  void run(RunInput input, Done done);
  /**
   * Main thread: queues one KVM_PRE_FAULT_MEMORY; `done` is called once, on the vCPU thread. It runs
   * there because it takes vcpu->mutex and faults pages in (which can wait on a userfaultfd), and a
   * kick interrupts it like KVM_RUN (EINTR with partial progress).
   */
  void preFault(uint64_t gpa, uint64_t size, uint64_t flags, PreFaultDone done);
  /** Main thread: makes an in-flight or queued KVM_RUN return (immediate_exit + SIGUSR1). */
  void kick();
  /** Main thread: KVM_GET_REGS/KVM_SET_REGS/KVM_GET_SREGS/KVM_SET_SREGS. */
  struct kvm_regs getRegs();
  void setRegs(const struct kvm_regs& regs);
  struct kvm_sregs getSregs();
  void setSregs(const struct kvm_sregs& sregs);
  /** Main thread: closes the vCPU now if idle, else as soon as KVM_RUN returns. */
  void close();

 private:
  enum class State { Idle, Queued, Running };
  /**
   * One queued request, run on the vCPU thread without mu_ held; returns what to call once the thread
   * has put its state back (the delivery of the result).
   */
  using Job = std::function<std::function<void()>(int fd, struct kvm_run* run)>;
  static void threadMain(std::shared_ptr<VcpuThread> self);
  /** Main thread, mu_ held: queues `job` and starts the thread on first use. */
  void queueLocked(Job job);
  /** vCPU thread: reads kvm_run after KVM_RUN returned `ret` with `err`. */
  VcpuExit decode(int ret, int err) const;
  /** Caller holds mu_; fd_ and run_ valid. */
  int idleFdLocked(const char* op);
  /** Caller holds mu_. */
  void releaseLocked();

  std::mutex mu_;
  std::condition_variable cv_;
  UniqueFd fd_;
  uint32_t id_;
  struct kvm_run* run_;
  size_t runSize_;
  State state_ = State::Idle;
  bool closing_ = false;
  bool threadStarted_ = false;
  pthread_t tid_{};
  Job job_;
  /** What to tell the waiter if the queued job is dropped by close() before it ran. */
  std::function<void()> cancel_;
};
