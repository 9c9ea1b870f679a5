#include "uffd-handler.h"

#include <fcntl.h>
#include <pthread.h>
#include <linux/userfaultfd.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <system_error>

#include "sys-error.h"

namespace {
constexpr uint32_t kUffdEvent = 0;
constexpr uint32_t kStopEvent = 1;
}  // namespace

// Coordinator thread.
UffdHandler::UffdHandler(PageResolver& resolver, uintptr_t start, uint64_t len, uint64_t registerMode,
                         uint64_t expectedIoctl, uint32_t readers, uint32_t delayUs, Fail fail)
    : resolver_(resolver), start_(start), len_(len), delayUs_(delayUs), fail_(std::move(fail)) {
  int fd = static_cast<int>(::syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  if (fd < 0) throw SysError::last("userfaultfd");
  uffd_ = UniqueFd(fd);
  struct uffdio_api api;
  memset(&api, 0, sizeof api);
  api.api = UFFD_API;
  if (::ioctl(fd, UFFDIO_API, &api) != 0) throw SysError::last("UFFDIO_API");
  struct uffdio_register reg;
  memset(&reg, 0, sizeof reg);
  reg.range.start = start;
  reg.range.len = len;
  reg.mode = registerMode;
  if (::ioctl(fd, UFFDIO_REGISTER, &reg) != 0) throw SysError::last("UFFDIO_REGISTER");
  registered_ = true;
  // uffd_setup_demand_paging(): "missing userfaultfd ioctl" when the range cannot be resolved that way.
  if ((reg.ioctls & expectedIoctl) != expectedIoctl) throw SysError(ENOTSUP, "UFFDIO_REGISTER");

  for (uint32_t i = 0; i < readers; i++) {
    auto r = std::make_unique<Reader>();
    int ep = ::epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) throw SysError::last("epoll_create1");
    r->epoll = UniqueFd(ep);
    int p[2];
    if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) throw SysError::last("pipe2");
    r->stopRead = UniqueFd(p[0]);
    r->stopWrite = UniqueFd(p[1]);
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN | EPOLLEXCLUSIVE;
    ev.data.u32 = kUffdEvent;
    if (::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) throw SysError::last("epoll_ctl");
    ev.events = EPOLLIN;
    ev.data.u32 = kStopEvent;
    if (::epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) != 0) throw SysError::last("epoll_ctl");
    readers_.push_back(std::move(r));
  }
}

UffdHandler::~UffdHandler() { stopReaders(); }

void UffdHandler::startReaders() {
  for (auto& r : readers_) {
    try {
      Reader* raw = r.get();
      r->thread = std::thread([this, raw] { readerMain(raw); });
    } catch (const std::system_error& e) {
      throw SysError(e.code().value() != 0 ? e.code().value() : EAGAIN, "pthread_create");
    }
  }
}

void UffdHandler::stopReaders() {
  for (auto& r : readers_) {
    if (!r->thread.joinable()) continue;
    // The pipe is empty and non-blocking: this write cannot block or come up short.
    ssize_t n = ::write(r->stopWrite.get(), "x", 1);
    (void)n;
    r->thread.join();
  }
}

void UffdHandler::unregister() {
  if (!registered_) return;
  struct uffdio_range range{start_, len_};
  // Best effort on the way out: a failure leaves the range registered, and closing the fd (the
  // destructor) unregisters it anyway.
  if (::ioctl(uffd_.get(), UFFDIO_UNREGISTER, &range) == 0) registered_ = false;
}

// A reader thread.
void UffdHandler::readerMain(Reader* reader) {
  pthread_setname_np(pthread_self(), "kvmconf-dp-uffd");
  for (;;) {
    struct epoll_event ev;
    int n = ::epoll_wait(reader->epoll.get(), &ev, 1, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n != 1) {
      fail_(n < 0 ? errno : EIO, "epoll_wait");
      return;
    }
    if (ev.data.u32 == kStopEvent) return;
    if (ev.events & (EPOLLERR | EPOLLHUP)) {
      fail_(EIO, "epoll_wait");
      return;
    }
    struct uffd_msg msg;
    ssize_t got = ::read(uffd_.get(), &msg, sizeof msg);
    if (got < 0 && errno == EAGAIN) continue;  // another reader took it
    if (got != static_cast<ssize_t>(sizeof msg)) {
      fail_(got < 0 ? errno : EIO, "read");
      return;
    }
    if (msg.event != UFFD_EVENT_PAGEFAULT) continue;
    if (delayUs_ != 0) ::usleep(delayUs_);
    const char* op = nullptr;
    int err = resolver_.resolve(uffd_.get(), static_cast<uintptr_t>(msg.arg.pagefault.address), true, &op);
    faults.fetch_add(1, std::memory_order_relaxed);
    if (err != 0) {
      fail_(err, op);
      return;
    }
  }
}
