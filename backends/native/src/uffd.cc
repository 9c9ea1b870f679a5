#include "uffd.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include "sys-error.h"

Uffd::Uffd(bool viaDev, int flags) {
  int fd;
  if (viaDev) {
    int dev = ::open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (dev < 0) throw SysError::last("open");
    UniqueFd devFd(dev);
    fd = ::ioctl(dev, USERFAULTFD_IOC_NEW, flags);
    if (fd < 0) throw SysError::last("USERFAULTFD_IOC_NEW");
  } else {
    fd = static_cast<int>(::syscall(__NR_userfaultfd, flags));
    if (fd < 0) throw SysError::last("userfaultfd");
  }
  fd_ = UniqueFd(fd);
}

int Uffd::checkedFd(const char* op) const {
  if (!fd_.valid()) throw SysError(EBADF, op);
  return fd_.get();
}

int Uffd::fd() const { return checkedFd("fd"); }

Uffd::ApiResult Uffd::api(uint64_t features) {
  struct uffdio_api a;
  memset(&a, 0, sizeof a);
  a.api = UFFD_API;
  a.features = features;
  if (::ioctl(checkedFd("UFFDIO_API"), UFFDIO_API, &a) != 0) throw SysError::last("UFFDIO_API");
  return ApiResult{a.api, a.features, a.ioctls};
}

uint64_t Uffd::registerRange(uint64_t start, uint64_t len, uint64_t mode) {
  struct uffdio_register r;
  memset(&r, 0, sizeof r);
  r.range.start = start;
  r.range.len = len;
  r.mode = mode;
  if (::ioctl(checkedFd("UFFDIO_REGISTER"), UFFDIO_REGISTER, &r) != 0) throw SysError::last("UFFDIO_REGISTER");
  return r.ioctls;
}

void Uffd::unregisterRange(uint64_t start, uint64_t len) {
  struct uffdio_range r{start, len};
  if (::ioctl(checkedFd("UFFDIO_UNREGISTER"), UFFDIO_UNREGISTER, &r) != 0) throw SysError::last("UFFDIO_UNREGISTER");
}

int64_t Uffd::copy(uint64_t dst, const void* src, uint64_t len, uint64_t mode) {
  struct uffdio_copy c;
  memset(&c, 0, sizeof c);
  c.dst = dst;
  c.src = reinterpret_cast<uintptr_t>(src);
  c.len = len;
  c.mode = mode;
  if (::ioctl(checkedFd("UFFDIO_COPY"), UFFDIO_COPY, &c) != 0) throw SysError::last("UFFDIO_COPY");
  return c.copy;
}

int64_t Uffd::zeropage(uint64_t start, uint64_t len, uint64_t mode) {
  struct uffdio_zeropage z;
  memset(&z, 0, sizeof z);
  z.range.start = start;
  z.range.len = len;
  z.mode = mode;
  if (::ioctl(checkedFd("UFFDIO_ZEROPAGE"), UFFDIO_ZEROPAGE, &z) != 0) throw SysError::last("UFFDIO_ZEROPAGE");
  return z.zeropage;
}

int64_t Uffd::continueRange(uint64_t start, uint64_t len, uint64_t mode) {
  struct uffdio_continue c;
  memset(&c, 0, sizeof c);
  c.range.start = start;
  c.range.len = len;
  c.mode = mode;
  if (::ioctl(checkedFd("UFFDIO_CONTINUE"), UFFDIO_CONTINUE, &c) != 0) throw SysError::last("UFFDIO_CONTINUE");
  return c.mapped;
}

void Uffd::wake(uint64_t start, uint64_t len) {
  struct uffdio_range r{start, len};
  if (::ioctl(checkedFd("UFFDIO_WAKE"), UFFDIO_WAKE, &r) != 0) throw SysError::last("UFFDIO_WAKE");
}

// A read(2) of a userfaultfd opened without O_NONBLOCK waits for a fault, and poll() then read() can
// still wait (a fault resolved in between leaves the queue). So the read runs with O_NONBLOCK set for
// its duration: only this object reads the fd, and the flag changes nothing else a test can observe
// beyond F_GETFL during the call.
std::vector<Uffd::Event> Uffd::readEvents(size_t max) {
  int fd = checkedFd("read");
  std::vector<Event> events;
  if (max == 0) return events;
  int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0) throw SysError::last("fcntl");
  if (!(fl & O_NONBLOCK) && ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) throw SysError::last("fcntl");
  std::vector<struct uffd_msg> msgs(max);
  ssize_t n = ::read(fd, msgs.data(), max * sizeof(struct uffd_msg));
  int err = errno;
  if (!(fl & O_NONBLOCK)) ::fcntl(fd, F_SETFL, fl);
  if (n < 0) {
    if (err == EAGAIN) return events;
    throw SysError(err, "read");
  }
  size_t count = static_cast<size_t>(n) / sizeof(struct uffd_msg);
  for (size_t i = 0; i < count; i++) {
    const struct uffd_msg& m = msgs[i];
    Event e{m.event, 0, 0};
    if (m.event == UFFD_EVENT_PAGEFAULT) {
      e.address = m.arg.pagefault.address;
      e.flags = m.arg.pagefault.flags;
    }
    events.push_back(e);
  }
  return events;
}

void Uffd::close() { fd_.reset(); }
