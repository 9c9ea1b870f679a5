// DemandPagingRun: demand_paging_test's run inside the addon (upstream-selftests.md §A.2, -k from §A.3).
//
// JavaScript builds the VM (boot memslot with the guest code, memstress's region as memslot 1, the
// userfault bitmap), then hands over a Spec; everything per page happens on this object's threads:
//   - the coordinator (one std::thread, holding the run alive until it ends; joined on the main thread
//     once its outcome has arrived there, see join()): creates the vCPUs and the
//     userfaultfds, starts the other threads, releases the vCPUs together, waits for them until the
//     deadline, stops what is left, and delivers the Outcome once through `done`;
//   - one thread per vCPU: KVM_RUN until the guest's GUEST_SYNC io exit, resolving KVM Userfault exits
//     (-k) in place, timed with CLOCK_MONOTONIC;
//   - the readers of each UffdHandler.
// Stopping (deadline, a failed call, abort()): set `stop`, kick every vCPU (immediate_exit + SIGUSR1),
// stop and join the readers, UFFDIO_UNREGISTER the region (a vCPU waiting on a fault ignores the kick
// on this host; unregistering wakes it and its access then faults normally), join the vCPUs. Every
// thread is joined and every fd and mapping the run made is closed before `done` is called.
#pragma once

#include <linux/kvm.h>
#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "host-mapping.h"
#include "page-resolver.h"
#include "uffd-handler.h"
#include "userfault-bitmap.h"
#include "vcpu-exit.h"
#include "vm.h"

class DemandPagingRun : public std::enable_shared_from_this<DemandPagingRun> {
 public:
  struct VcpuSpec {
    uint32_t id;
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    /** Host CPU to pin the vCPU thread to, or -1. */
    int cpu = -1;
  };
  struct UffdRange {
    uint64_t gpa;
    uint64_t len;
  };
  struct Spec {
    std::shared_ptr<Vm> vm;
    std::shared_ptr<HostMapping> region;
    uint64_t regionGpa = 0;
    uint64_t hostPageSize = 4096;
    /** demand_paging_size: what one resolution covers. */
    uint64_t unitBytes = 4096;
    uint64_t guestPageSize = 4096;
    /** The port of the guest's GUEST_SYNC (`out` of 4 bytes). */
    uint16_t syncPort = 0;
    std::vector<VcpuSpec> vcpus;
    /** Host CPU for the coordinator (upstream's main thread), or -1. */
    int mainCpu = -1;
    PageResolver::Mode uffdMode = PageResolver::Mode::None;
    std::vector<UffdRange> uffdRanges;
    uint64_t registerMode = 0;
    uint64_t expectedIoctl = 0;
    uint32_t readersPerUffd = 1;
    uint32_t delayUs = 0;
    /** -k: the region's userfault bitmap (its memslot already has KVM_MEM_USERFAULT); null otherwise. */
    std::shared_ptr<UserfaultBitmap> bitmap;
    /** After a write pass: count the guest pages whose first u64 is not this. */
    bool checkWrites = false;
    uint64_t writeValue = 0;
    uint32_t timeoutMs = 600000;
  };

  struct Violation {
    uint32_t vcpu;
    uint64_t gpa;
    uint64_t size;
    uint64_t flags;
    const char* why;
  };
  struct VcpuOutcome {
    bool synced = false;
    uint64_t elapsedNs = 0;
    /** How KVM_RUN ended when not synced. */
    VcpuExit exit;
    uint64_t userfaultExits = 0;
  };
  struct Outcome {
    /** A failed kernel call stopped the run: its errno and op (err 0: none). */
    int err = 0;
    const char* op = nullptr;
    bool timedOut = false;
    uint64_t elapsedNs = 0;
    std::vector<VcpuOutcome> vcpus;
    uint64_t uffds = 0, faults = 0, resolved = 0, eexist = 0, wakes = 0;
    uint64_t units = 0, unitsOnce = 0, unitsMore = 0, unitsNever = 0;
    uint64_t userfaultExits = 0, pagesWithExit = 0, pagesWithMoreExits = 0, violationCount = 0;
    std::vector<Violation> violations;
    /** -1 when not checked. */
    int64_t pagesWithoutWrite = -1;
  };
  using Done = std::function<void(Outcome&)>;

  explicit DemandPagingRun(Spec spec);
  ~DemandPagingRun();
  DemandPagingRun(const DemandPagingRun&) = delete;
  DemandPagingRun& operator=(const DemandPagingRun&) = delete;

  /** Main thread: starts the coordinator; `done` is called once, on it. Throws SysError if it cannot start. */
  void start(Done done);
  /**
   * Main thread, after `done` ran: joins the coordinator, which has nothing left to do but return, so
   * that no thread of the run outlives the delivery of its outcome.
   */
  void join();
  /** Main thread (the addon's teardown): stops the run, waits until the coordinator has delivered, joins it. */
  void abort();

 private:
  struct Vcpu {
    UniqueFd fd;
    struct kvm_run* run = nullptr;
    size_t runSize = 0;
    std::thread thread;
    /** Set once the thread has marked itself a vCPU thread: before that, SIGUSR1 would reach Node's handler. */
    std::atomic<bool> started{false};
    std::atomic<bool> exited{false};
    VcpuOutcome outcome;
  };

  /** The coordinator thread. */
  void coordinate(Done done);
  /** Coordinator: KVM_CREATE_VCPU, kvm_run, sregs/regs; the userfaultfds. Throws SysError. */
  void setUp();
  /** Coordinator: stop everything still running (see the header comment). */
  void stopAll();
  /** Coordinator: the result, after every thread joined. */
  void collect(Outcome& out);
  /** A vCPU thread. */
  void vcpuMain(size_t index);
  /** A vCPU thread: one KVM_EXIT_MEMORY_FAULT under -k; false when the vCPU must stop. */
  bool resolveUserfault(size_t index, uint64_t flags, uint64_t gpa, uint64_t size);
  /** Any thread: the first failed call wins; wakes the coordinator. */
  void fail(int err, const char* op);
  void notify();
  void kickVcpus();

  Spec spec_;
  std::thread coordinator_;
  std::unique_ptr<PageResolver> resolver_;
  std::vector<std::unique_ptr<UffdHandler>> handlers_;
  std::vector<std::unique_ptr<Vcpu>> vcpus_;
  /** -k: exits per host page of the region, saturating at 2. */
  std::unique_ptr<std::atomic<uint8_t>[]> exitsPerPage_;
  std::mutex violationsMu_;
  std::vector<Violation> violations_;
  std::atomic<uint64_t> violationCount_{0};

  std::atomic<bool> stop_{false};
  std::atomic<bool> go_{false};
  std::atomic<uint32_t> ready_{0};
  uint64_t startNs_ = 0;
  uint64_t endNs_ = 0;
  /** The handlers' fault counts, summed before they are closed. */
  uint64_t faults_ = 0;

  std::mutex mu_;
  std::condition_variable cv_;
  int err_ = 0;
  const char* op_ = nullptr;
  bool aborted_ = false;
  bool delivered_ = false;
};
