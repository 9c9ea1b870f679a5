#include "vcpu-thread.h"

#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <cstring>
#include <thread>

#include "kvm-uapi.h"
#include "signal.h"
#include "sys-error.h"

VcpuThread::VcpuThread(UniqueFd fd, uint32_t id, struct kvm_run* run, size_t runSize)
    : fd_(std::move(fd)), id_(id), run_(run), runSize_(runSize) {}

// Runs wherever the last reference drops: the main thread, or the vCPU thread as it leaves.
VcpuThread::~VcpuThread() {
  std::lock_guard<std::mutex> lock(mu_);
  releaseLocked();
}

void VcpuThread::releaseLocked() {
  if (run_ != nullptr) ::munmap(run_, runSize_);
  run_ = nullptr;
  fd_.reset();
}

int VcpuThread::fd() {
  std::lock_guard<std::mutex> lock(mu_);
  if (closing_ || !fd_.valid()) throw SysError(EBADF, "fd");
  return fd_.get();
}

int VcpuThread::idleFdLocked(const char* op) {
  if (closing_ || !fd_.valid()) throw SysError(EBADF, op);
  if (state_ != State::Idle) throw SysError(EBUSY, op);
  return fd_.get();
}

// Main thread.
void VcpuThread::run(RunInput input, Done done) {
  std::lock_guard<std::mutex> lock(mu_);
  idleFdLocked("KVM_RUN");
  // The thread is idle, so kvm_run is ours to write: answers for the exit the guest is waiting on.
  auto* base = reinterpret_cast<uint8_t*>(run_);
  if (input.hasMmioData) {
    if (input.mmioData.size() > sizeof run_->mmio.data) throw SysError(EINVAL, "KVM_RUN");
    memcpy(run_->mmio.data, input.mmioData.data(), input.mmioData.size());
  }
  if (input.hasIoData) {
    uint64_t off = run_->io.data_offset;
    uint64_t room = static_cast<uint64_t>(run_->io.size) * run_->io.count;
    if (input.ioData.size() > room || off > runSize_ || input.ioData.size() > runSize_ - off) {
      throw SysError(EINVAL, "KVM_RUN");
    }
    memcpy(base + off, input.ioData.data(), input.ioData.size());
  }
  cancel_ = [done] {
    VcpuExit e;
    e.kind = VcpuExit::Kind::Error;
    e.err = EBADF;
    done(e);
  };
  queueLocked([self = this, done](int fd, struct kvm_run* run) -> std::function<void()> {
    // vCPU thread. A stale KVM_EXIT_MEMORY_FAULT from an earlier run must not decorate an unrelated EFAULT.
    run->exit_reason = KVM_EXIT_UNKNOWN;
    int ret = ::ioctl(fd, KVM_RUN, 0);
    int err = ret < 0 ? errno : 0;
    VcpuExit exit = self->decode(ret, err);
    return [done, exit] { done(exit); };
  });
}

// Main thread.
void VcpuThread::preFault(uint64_t gpa, uint64_t size, uint64_t flags, PreFaultDone done) {
  std::lock_guard<std::mutex> lock(mu_);
  idleFdLocked("KVM_PRE_FAULT_MEMORY");
  cancel_ = [done, gpa, size] { done(PreFaultResult{-1, EBADF, gpa, size}); };
  queueLocked([gpa, size, flags, done](int fd, struct kvm_run*) -> std::function<void()> {
    // vCPU thread.
    kvmuapi::PreFaultMemory range;
    memset(&range, 0, sizeof range);
    range.gpa = gpa;
    range.size = size;
    range.flags = flags;
    int ret = ::ioctl(fd, kvmuapi::PRE_FAULT_MEMORY, &range);
    PreFaultResult r{ret < 0 ? -1 : 0, ret < 0 ? errno : 0, range.gpa, range.size};
    return [done, r] { done(r); };
  });
}

void VcpuThread::queueLocked(Job job) {
  job_ = std::move(job);
  state_ = State::Queued;
  if (!threadStarted_) {
    threadStarted_ = true;
    std::thread(threadMain, shared_from_this()).detach();
  } else {
    cv_.notify_one();
  }
}

// Main thread.
void VcpuThread::kick() {
  std::lock_guard<std::mutex> lock(mu_);
  if (closing_ || !fd_.valid()) throw SysError(EBADF, "kick");
  if (state_ == State::Idle) return;
  __atomic_store_n(&run_->immediate_exit, 1, __ATOMIC_SEQ_CST);
  if (state_ == State::Running) pthread_kill(tid_, kick_signal::kSignal);
}

// The vCPU thread: one queued job at a time until close().
void VcpuThread::threadMain(std::shared_ptr<VcpuThread> self) {
  kick_signal::tOnVcpuThread = 1;
  std::unique_lock<std::mutex> lock(self->mu_);
  self->tid_ = pthread_self();
  for (;;) {
    self->cv_.wait(lock, [&] { return self->state_ == State::Queued || self->closing_; });
    if (self->state_ != State::Queued) break;  // closing with nothing queued
    self->state_ = State::Running;
    Job job = std::move(self->job_);
    self->job_ = nullptr;
    self->cancel_ = nullptr;
    int fd = self->fd_.get();
    struct kvm_run* run = self->run_;
    lock.unlock();

    std::function<void()> deliver = job(fd, run);

    lock.lock();
    __atomic_store_n(&run->immediate_exit, 0, __ATOMIC_SEQ_CST);
    self->state_ = State::Idle;
    bool closing = self->closing_;
    if (closing) self->releaseLocked();
    lock.unlock();
    deliver();
    lock.lock();
    if (closing) break;
  }
}

VcpuExit VcpuThread::decode(int ret, int err) const { return decodeVcpuExit(run_, runSize_, ret, err); }

struct kvm_regs VcpuThread::getRegs() {
  std::lock_guard<std::mutex> lock(mu_);
  struct kvm_regs regs;
  if (::ioctl(idleFdLocked("KVM_GET_REGS"), KVM_GET_REGS, &regs) != 0) throw SysError::last("KVM_GET_REGS");
  return regs;
}

void VcpuThread::setRegs(const struct kvm_regs& regs) {
  std::lock_guard<std::mutex> lock(mu_);
  if (::ioctl(idleFdLocked("KVM_SET_REGS"), KVM_SET_REGS, &regs) != 0) throw SysError::last("KVM_SET_REGS");
}

struct kvm_sregs VcpuThread::getSregs() {
  std::lock_guard<std::mutex> lock(mu_);
  struct kvm_sregs sregs;
  if (::ioctl(idleFdLocked("KVM_GET_SREGS"), KVM_GET_SREGS, &sregs) != 0) throw SysError::last("KVM_GET_SREGS");
  return sregs;
}

void VcpuThread::setSregs(const struct kvm_sregs& sregs) {
  std::lock_guard<std::mutex> lock(mu_);
  if (::ioctl(idleFdLocked("KVM_SET_SREGS"), KVM_SET_SREGS, &sregs) != 0) throw SysError::last("KVM_SET_SREGS");
}

// Main thread.
void VcpuThread::close() {
  std::function<void()> cancel;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closing_) return;
    closing_ = true;
    if (state_ == State::Running) {
      // The thread owns the fd until its ioctl returns; make it return now.
      __atomic_store_n(&run_->immediate_exit, 1, __ATOMIC_SEQ_CST);
      pthread_kill(tid_, kick_signal::kSignal);
      return;
    }
    if (state_ == State::Queued) {
      cancel = std::move(cancel_);
      cancel_ = nullptr;
      job_ = nullptr;
      state_ = State::Idle;
    }
    releaseLocked();
    cv_.notify_all();
  }
  if (cancel) cancel();
}
