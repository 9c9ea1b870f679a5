#include "demand-paging-run.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <system_error>

#include "fault-guard.h"
#include "kvm-uapi.h"
#include "signal.h"
#include "sys-error.h"

namespace {

/** KVM_MEMORY_EXIT_FLAG_USERFAULT (KVM Userfault series, upstream-selftests.md §0.1). */
constexpr uint64_t kMemoryExitFlagUserfault = 1ull << 4;
/** How many violations the outcome lists (all are counted). */
constexpr size_t kMaxViolations = 16;
/** While stopping: how often vCPUs that have not left KVM_RUN are kicked again. */
constexpr auto kRekick = std::chrono::milliseconds(10);

uint64_t nowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

/** Pins the calling thread to `cpu`; returns 0 or the errno. */
int pinTo(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

std::thread startThread(std::function<void()> fn) {
  try {
    return std::thread(std::move(fn));
  } catch (const std::system_error& e) {
    throw SysError(e.code().value() != 0 ? e.code().value() : EAGAIN, "pthread_create");
  }
}

}  // namespace

DemandPagingRun::DemandPagingRun(Spec spec) : spec_(std::move(spec)) {}

// Main thread (the completion or teardown holds the last reference once the coordinator is joined).
DemandPagingRun::~DemandPagingRun() {
  if (coordinator_.joinable()) {
    // Only if the outcome never reached the main thread (a failed post): the thread is ending anyway.
    if (coordinator_.get_id() == std::this_thread::get_id()) coordinator_.detach();
    else coordinator_.join();
  }
  for (auto& v : vcpus_) {
    if (v->run != nullptr) ::munmap(v->run, v->runSize);
  }
}

// Main thread.
void DemandPagingRun::start(Done done) {
  auto self = shared_from_this();
  coordinator_ = startThread([self, done] { self->coordinate(done); });
}

// Main thread.
void DemandPagingRun::join() {
  if (coordinator_.joinable()) coordinator_.join();
}

// Main thread.
void DemandPagingRun::abort() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    aborted_ = true;
    cv_.notify_all();
    cv_.wait(lock, [&] { return delivered_; });
  }
  join();
}

void DemandPagingRun::notify() {
  std::lock_guard<std::mutex> lock(mu_);
  cv_.notify_all();
}

void DemandPagingRun::fail(int err, const char* op) {
  std::lock_guard<std::mutex> lock(mu_);
  if (err_ == 0 && !stop_.load()) {
    err_ = err;
    op_ = op;
  }
  cv_.notify_all();
}

// The coordinator thread.
void DemandPagingRun::coordinate(Done done) {
  pthread_setname_np(pthread_self(), "kvmconf-dp");  // every thread of a run is named kvmconf-dp*
  Outcome out;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(spec_.timeoutMs);
  try {
    if (spec_.mainCpu >= 0) {
      if (int err = pinTo(spec_.mainCpu)) throw SysError(err, "pthread_setaffinity_np");
    }
    setUp();
    for (size_t i = 0; i < vcpus_.size(); i++) vcpus_[i]->thread = startThread([this, i] { vcpuMain(i); });
    // memstress_start_vcpu_threads(): every vCPU thread is up before any of them runs, so that thread
    // creation (which takes mmap_lock) does not land among the faults.
    while (ready_.load() < vcpus_.size() && !stop_.load()) sched_yield();
    startNs_ = nowNs();
    go_.store(true);

    std::unique_lock<std::mutex> lock(mu_);
    auto finished = [&] {
      for (auto& v : vcpus_) {
        if (!v->exited.load()) return false;
      }
      return true;
    };
    bool inTime = cv_.wait_until(lock, deadline, [&] { return finished() || err_ != 0 || aborted_; });
    out.timedOut = !inTime;
  } catch (const SysError& e) {
    std::lock_guard<std::mutex> lock(mu_);
    if (err_ == 0) {
      err_ = e.err();
      op_ = e.op();
    }
  } catch (const std::bad_alloc&) {
    std::lock_guard<std::mutex> lock(mu_);
    if (err_ == 0) {
      err_ = ENOMEM;
      op_ = "malloc";
    }
  }
  stopAll();
  out.elapsedNs = startNs_ != 0 ? endNs_ - startNs_ : 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    out.err = err_;
    out.op = op_;
  }
  collect(out);
  done(out);
  std::lock_guard<std::mutex> lock(mu_);
  delivered_ = true;
  cv_.notify_all();
}

// Coordinator.
void DemandPagingRun::setUp() {
  const uintptr_t hva = spec_.region->addr();
  const uint64_t size = spec_.region->size();
  if (spec_.bitmap) {
    uint64_t pages = size / spec_.hostPageSize;
    exitsPerPage_.reset(new std::atomic<uint8_t>[pages]);
    for (uint64_t i = 0; i < pages; i++) exitsPerPage_[i].store(0, std::memory_order_relaxed);
  }
  resolver_ = std::make_unique<PageResolver>(spec_.uffdMode, hva, size, spec_.unitBytes);

  const int vmFd = spec_.vm->fd();
  const size_t runSize = static_cast<size_t>(spec_.vm->vcpuMmapSize());
  for (const VcpuSpec& vs : spec_.vcpus) {
    auto v = std::make_unique<Vcpu>();
    int fd = ::ioctl(vmFd, KVM_CREATE_VCPU, static_cast<unsigned long>(vs.id));
    if (fd < 0) throw SysError::last("KVM_CREATE_VCPU");
    v->fd = UniqueFd(fd);
    void* run = ::mmap(nullptr, runSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (run == MAP_FAILED) throw SysError::last("mmap");
    v->run = static_cast<struct kvm_run*>(run);
    v->runSize = runSize;
    vcpus_.push_back(std::move(v));
    if (::ioctl(fd, KVM_SET_SREGS, &vs.sregs) != 0) throw SysError::last("KVM_SET_SREGS");
    if (::ioctl(fd, KVM_SET_REGS, &vs.regs) != 0) throw SysError::last("KVM_SET_REGS");
  }

  for (const UffdRange& r : spec_.uffdRanges) {
    handlers_.push_back(std::make_unique<UffdHandler>(
        *resolver_, hva + (r.gpa - spec_.regionGpa), r.len, spec_.registerMode, spec_.expectedIoctl,
        spec_.readersPerUffd, spec_.delayUs, [this](int err, const char* op) { fail(err, op); }));
  }
  for (auto& h : handlers_) h->startReaders();
}

// Coordinator: immediate_exit plus SIGUSR1 (signal.h) to every vCPU still in its loop.
void DemandPagingRun::kickVcpus() {
  for (auto& v : vcpus_) {
    if (v->run == nullptr || v->exited.load()) continue;
    __atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
    // A thread not started yet sees `stop` before its first KVM_RUN.
    if (v->started.load() && v->thread.joinable()) pthread_kill(v->thread.native_handle(), kick_signal::kSignal);
  }
}

// Coordinator.
void DemandPagingRun::stopAll() {
  bool early = false;
  for (auto& v : vcpus_) early = early || !v->exited.load();
  if (!early) {
    // The normal end: every vCPU synced (or exited); the clock stops when the last one has joined.
    for (auto& v : vcpus_) {
      if (v->thread.joinable()) v->thread.join();
    }
    endNs_ = nowNs();
    for (auto& h : handlers_) h->stopReaders();
  } else {
    stop_.store(true);
    kickVcpus();
    for (auto& h : handlers_) h->stopReaders();
    // A vCPU waiting on a fault does not see the kick; with the range unregistered its access goes on
    // as a normal fault, and it then leaves KVM_RUN for the pending signal or immediate_exit.
    for (auto& h : handlers_) h->unregister();
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      bool all = true;
      for (auto& v : vcpus_) all = all && (v->exited.load() || !v->thread.joinable());
      if (all) break;
      lock.unlock();
      kickVcpus();
      lock.lock();
      cv_.wait_for(lock, kRekick);
    }
    lock.unlock();
    for (auto& v : vcpus_) {
      if (v->thread.joinable()) v->thread.join();
    }
    endNs_ = nowNs();
  }
  for (auto& h : handlers_) faults_ += h->faults.load();
  // Closing a userfaultfd unregisters what is left of its range.
  handlers_.clear();
}

// A vCPU thread.
void DemandPagingRun::vcpuMain(size_t index) {
  kick_signal::tOnVcpuThread = 1;
  Vcpu& v = *vcpus_[index];
  v.started.store(true);
  pthread_setname_np(pthread_self(), "kvmconf-dp-vcpu");
  int cpu = spec_.vcpus[index].cpu;
  if (cpu >= 0) {
    if (int err = pinTo(cpu)) fail(err, "pthread_setaffinity_np");
  }
  ready_.fetch_add(1);
  while (!go_.load() && !stop_.load()) sched_yield();

  struct kvm_run* run = v.run;
  for (;;) {
    if (stop_.load()) break;
    run->exit_reason = KVM_EXIT_UNKNOWN;
    int ret = ::ioctl(v.fd.get(), KVM_RUN, 0);
    int err = ret < 0 ? errno : 0;
    if (ret < 0 && err == EFAULT && spec_.bitmap && run->exit_reason == kvmuapi::EXIT_MEMORY_FAULT) {
      kvmuapi::MemoryFault mf;
      memcpy(&mf, reinterpret_cast<const uint8_t*>(run) + kvmuapi::RUN_EXIT_UNION, sizeof mf);
      v.outcome.userfaultExits++;
      if (resolveUserfault(index, mf.flags, mf.gpa, mf.size)) continue;
      v.outcome.exit = decodeVcpuExit(run, v.runSize, ret, err);
      break;
    }
    if (ret < 0 && err == EINTR) continue;  // a kick: the loop's head decides
    VcpuExit exit = decodeVcpuExit(run, v.runSize, ret, err);
    if (exit.kind == VcpuExit::Kind::Error) {
      fail(err, "KVM_RUN");
      v.outcome.exit = exit;
      break;
    }
    if (exit.kind == VcpuExit::Kind::Io && exit.direction == KVM_EXIT_IO_OUT && exit.port == spec_.syncPort &&
        exit.size == 4 && exit.count == 1) {
      v.outcome.synced = true;
      v.outcome.elapsedNs = nowNs() - startNs_;
      break;
    }
    // demand_paging_test's vcpu_worker: "Invalid guest sync status".
    v.outcome.exit = exit;
    break;
  }
  v.exited.store(true);
  notify();
}

// A vCPU thread, under -k: resolve_kvm_userfault() of the series (§A.3).
bool DemandPagingRun::resolveUserfault(size_t index, uint64_t flags, uint64_t gpa, uint64_t size) {
  const uint64_t page = spec_.hostPageSize;
  const uint64_t regionSize = spec_.region->size();
  auto violation = [&](const char* why) {
    violationCount_.fetch_add(1);
    std::lock_guard<std::mutex> lock(violationsMu_);
    if (violations_.size() < kMaxViolations) {
      violations_.push_back(Violation{spec_.vcpus[index].id, gpa, size, flags, why});
    }
  };
  // The selftest asserts flags == KVM_MEMORY_EXIT_FLAG_USERFAULT exactly: PRIVATE must not be set.
  if (flags != kMemoryExitFlagUserfault) {
    violation("flags");
    return false;
  }
  if (gpa < spec_.regionGpa || gpa - spec_.regionGpa >= regionSize) {
    violation("outside the region");
    return false;
  }
  if (gpa % page != 0) violation("gpa not page aligned");
  if (size != page) violation("size");
  const uint64_t n = (gpa - spec_.regionGpa) / page;
  std::atomic<uint8_t>& exits = exitsPerPage_[n];
  uint8_t seen = exits.load(std::memory_order_relaxed);
  while (seen < 2 && !exits.compare_exchange_weak(seen, static_cast<uint8_t>(seen + 1), std::memory_order_relaxed)) {
  }
  const uintptr_t hva = spec_.region->addr() + n * page;
  if (spec_.uffdMode != PageResolver::Mode::None) {
    // Resolve ahead of the fault, through the userfaultfd covering the page: nobody waits on it yet.
    for (auto& h : handlers_) {
      if (!h->covers(hva)) continue;
      const char* op = nullptr;
      if (int err = resolver_->resolve(h->fd(), hva, false, &op)) {
        fail(err, op);
        return false;
      }
      break;
    }
  } else {
    resolver_->populate(hva, page);
  }
  spec_.bitmap->clearRelease(n);
  return true;
}

// Coordinator, after every thread joined.
void DemandPagingRun::collect(Outcome& out) {
  for (auto& v : vcpus_) out.vcpus.push_back(v->outcome);
  if (resolver_ && spec_.uffdMode != PageResolver::Mode::None) {
    out.uffds = spec_.uffdRanges.size();
    out.resolved = resolver_->resolved.load();
    out.eexist = resolver_->eexist.load();
    out.wakes = resolver_->wakes.load();
    out.units = resolver_->units();
    resolver_->unitCounts(&out.unitsOnce, &out.unitsMore, &out.unitsNever);
  }
  out.faults = faults_;  // summed by stopAll() before it closed the handlers
  if (exitsPerPage_) {
    uint64_t pages = spec_.region->size() / spec_.hostPageSize;
    for (uint64_t i = 0; i < pages; i++) {
      uint8_t n = exitsPerPage_[i].load(std::memory_order_relaxed);
      if (n >= 1) out.pagesWithExit++;
      if (n >= 2) out.pagesWithMoreExits++;
    }
    for (auto& v : vcpus_) out.userfaultExits += v->outcome.userfaultExits;
    out.violationCount = violationCount_.load();
    std::lock_guard<std::mutex> lock(violationsMu_);
    out.violations = violations_;
  }
  if (spec_.checkWrites && out.err == 0 && !out.timedOut) {
    // Every userfaultfd is closed by now, so these reads cannot wait on a resolver.
    int64_t missing = 0;
    const uintptr_t hva = spec_.region->addr();
    for (uint64_t off = 0; off < spec_.region->size(); off += spec_.guestPageSize) {
      uint64_t value = 0;
      HostFaultInfo f = FaultGuard::read(hva + off, &value, sizeof value);
      if (f.signo != 0 || value != spec_.writeValue) missing++;
    }
    out.pagesWithoutWrite = missing;
  }
  for (auto& v : vcpus_) {
    if (v->run != nullptr) ::munmap(v->run, v->runSize);
    v->run = nullptr;
    v->fd.reset();
  }
}
