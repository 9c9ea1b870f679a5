// UffdHandler: one userfaultfd over part of a demand-paging run's region and its reader threads, as
// upstream's uffd_setup_demand_paging() / uffd_stop_demand_paging() (upstream-selftests.md §B.2).
//
// Each reader waits in epoll on {the userfaultfd with EPOLLIN | EPOLLEXCLUSIVE, its own stop pipe}, so
// one reader wakes per event; it reads one uffd_msg (EAGAIN: another reader took it), sleeps the delay,
// and resolves through the run's PageResolver. A reader that fails reports the errno and op through
// `fail` and leaves; the run then stops.
//
// Threads: constructed, started, stopped and destroyed on the run's coordinator thread; the readers
// are std::threads of their own, always joined by stopReaders() (or the destructor).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include "page-resolver.h"
#include "unique-fd.h"

class UffdHandler {
 public:
  using Fail = std::function<void(int err, const char* op)>;

  /**
   * userfaultfd(O_CLOEXEC | O_NONBLOCK), UFFDIO_API (features 0), UFFDIO_REGISTER of [start, start +
   * len) in `registerMode`, which must allow `expectedIoctl` (else ENOTSUP from UFFDIO_REGISTER), and
   * an epoll fd plus a stop pipe per reader. Throws SysError.
   */
  UffdHandler(PageResolver& resolver, uintptr_t start, uint64_t len, uint64_t registerMode, uint64_t expectedIoctl,
              uint32_t readers, uint32_t delayUs, Fail fail);
  ~UffdHandler();
  UffdHandler(const UffdHandler&) = delete;
  UffdHandler& operator=(const UffdHandler&) = delete;

  int fd() const { return uffd_.get(); }
  bool covers(uintptr_t addr) const { return addr >= start_ && addr - start_ < len_; }
  /** Starts the reader threads (throws SysError from pthread_create as EAGAIN). */
  void startReaders();
  /** Tells every reader to stop (one byte on its pipe) and joins it. */
  void stopReaders();
  /** UFFDIO_UNREGISTER of the range: every fault still waiting is woken and then faults normally. */
  void unregister();

  /** UFFD_EVENT_PAGEFAULT messages handled. */
  std::atomic<uint64_t> faults{0};

 private:
  struct Reader {
    UniqueFd epoll;
    UniqueFd stopRead;
    UniqueFd stopWrite;
    std::thread thread;
  };
  /** A reader thread: uffd_handler_thread_fn(). */
  void readerMain(Reader* reader);

  PageResolver& resolver_;
  uintptr_t start_;
  uint64_t len_;
  uint32_t delayUs_;
  Fail fail_;
  UniqueFd uffd_;
  bool registered_ = false;
  std::vector<std::unique_ptr<Reader>> readers_;
};
