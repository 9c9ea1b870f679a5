// BlockingPool: our own threads for work that may block without bound (host accesses that can wait on
// a userfaultfd resolver, fills of large mappings). Not libuv's pool: a job stuck on an unresolved
// fault must not starve fs and dns work, and it must not stop other jobs either, so the pool grows a
// thread whenever every thread is busy (up to kMaxThreads) and idle threads leave after a while.
//
// Threads are detached and share state through a shared_ptr, so nothing joins them at exit: a thread
// blocked in the kernel forever cannot hang teardown.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>

class BlockingPool {
 public:
  static constexpr int kMaxThreads = 64;

  BlockingPool();
  ~BlockingPool();
  BlockingPool(const BlockingPool&) = delete;
  BlockingPool& operator=(const BlockingPool&) = delete;

  /** Queues `job` (main thread). The job runs on a pool thread and reports its result itself. */
  void submit(std::function<void()> job);
  /** Stops idle threads; queued jobs are dropped (main thread, at env teardown). */
  void shutdown();

 private:
  struct Shared {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::function<void()>> jobs;
    int idle = 0;
    int total = 0;
    bool stop = false;
  };
  static void workerMain(std::shared_ptr<Shared> s);
  std::shared_ptr<Shared> s_;
};
