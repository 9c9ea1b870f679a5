#include "guest-memfd.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sys-error.h"

GuestMemfd::GuestMemfd(UniqueFd fd, uint64_t flags) : file_(std::make_shared<UniqueFd>(std::move(fd))), flags_(flags) {
  // kvm_gmem_create() installs the fd with O_RDWR only; a child spawned by the test must not inherit it.
  // On failure file_ is destroyed with the half-built object, which closes the fd.
  if (::fcntl(file_->get(), F_SETFD, FD_CLOEXEC) != 0) throw SysError::last("fcntl");
}

int GuestMemfd::checkedFd(const char* op) const {
  if (!file_->valid()) throw SysError(EBADF, op);
  return file_->get();
}

int GuestMemfd::fd() const { return checkedFd("fd"); }

GuestMemfd::Stat GuestMemfd::stat() const {
  struct stat st;
  if (::fstat(checkedFd("fstat"), &st) != 0) throw SysError::last("fstat");
  return Stat{static_cast<uint64_t>(st.st_size), static_cast<uint64_t>(st.st_blksize),
              static_cast<uint64_t>(st.st_ino)};
}

ssize_t GuestMemfd::read(void* buf, size_t len) const {
  ssize_t r = ::read(checkedFd("read"), buf, len);
  if (r < 0) throw SysError::last("read");
  return r;
}

ssize_t GuestMemfd::write(const void* buf, size_t len) const {
  ssize_t r = ::write(checkedFd("write"), buf, len);
  if (r < 0) throw SysError::last("write");
  return r;
}

ssize_t GuestMemfd::pread(void* buf, size_t len, uint64_t off) const {
  int fd = checkedFd("pread");
  ssize_t r = ::pread(fd, buf, len, static_cast<off_t>(off));
  if (r < 0) throw SysError::last("pread");
  return r;
}

ssize_t GuestMemfd::pwrite(const void* buf, size_t len, uint64_t off) const {
  int fd = checkedFd("pwrite");
  ssize_t r = ::pwrite(fd, buf, len, static_cast<off_t>(off));
  if (r < 0) throw SysError::last("pwrite");
  return r;
}

// Offsets past INT64_MAX reach the kernel as negative off_t, which it rejects (EINVAL) itself.
void GuestMemfd::fallocate(int mode, uint64_t off, uint64_t len) const {
  int fd = checkedFd("fallocate");
  if (::fallocate(fd, mode, static_cast<off_t>(off), static_cast<off_t>(len)) != 0) throw SysError::last("fallocate");
}

std::shared_ptr<HostMapping> GuestMemfd::mmap(uint64_t length, uint64_t offset, bool shared, uint64_t align) const {
  checkedFd("mmap");
  return HostMapping::ofFile(file_, length, offset, shared, align, "guest_memfd");
}

void GuestMemfd::close() { file_->reset(); }
