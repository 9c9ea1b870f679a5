#include "blocking-pool.h"

#include <chrono>
#include <thread>

BlockingPool::BlockingPool() : s_(std::make_shared<Shared>()) {}

BlockingPool::~BlockingPool() { shutdown(); }

// Main thread.
void BlockingPool::submit(std::function<void()> job) {
  std::lock_guard<std::mutex> lock(s_->mu);
  if (s_->stop) return;
  s_->jobs.push_back(std::move(job));
  if (static_cast<int>(s_->jobs.size()) > s_->idle && s_->total < kMaxThreads) {
    s_->total++;
    std::thread(workerMain, s_).detach();
  } else {
    s_->cv.notify_one();
  }
}

// Main thread.
void BlockingPool::shutdown() {
  std::lock_guard<std::mutex> lock(s_->mu);
  s_->stop = true;
  s_->jobs.clear();
  s_->cv.notify_all();
}

// Pool thread: runs jobs until told to stop or idle for 10 s.
void BlockingPool::workerMain(std::shared_ptr<Shared> s) {
  std::unique_lock<std::mutex> lock(s->mu);
  for (;;) {
    if (s->stop) break;
    if (s->jobs.empty()) {
      s->idle++;
      bool woke = s->cv.wait_for(lock, std::chrono::seconds(10), [&] { return s->stop || !s->jobs.empty(); });
      s->idle--;
      if (!woke) break;
      continue;
    }
    std::function<void()> job = std::move(s->jobs.front());
    s->jobs.pop_front();
    lock.unlock();
    job();
    job = nullptr;  // destroy captures (shared_ptrs to mappings) off the lock
    lock.lock();
  }
  s->total--;
}
