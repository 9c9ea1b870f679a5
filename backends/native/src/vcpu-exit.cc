// decodeVcpuExit(): struct kvm_run after one KVM_RUN, as plain data (vcpu-exit.h).
#include "vcpu-exit.h"

#include <cerrno>
#include <cstring>

#include "kvm-uapi.h"

VcpuExit decodeVcpuExit(const struct kvm_run* run, size_t runSize, int ret, int err) {
  VcpuExit e;
  const auto* base = reinterpret_cast<const uint8_t*>(run);
  e.exitReason = run->exit_reason;
  if (ret < 0) {
    if ((err == EFAULT || err == EHWPOISON) && run->exit_reason == kvmuapi::EXIT_MEMORY_FAULT) {
      // api.rst: KVM_EXIT_MEMORY_FAULT is the one exit that comes with -1 (EFAULT or EHWPOISON).
      kvmuapi::MemoryFault mf;
      memcpy(&mf, base + kvmuapi::RUN_EXIT_UNION, sizeof mf);
      e.kind = VcpuExit::Kind::MemoryFault;
      e.err = err;
      e.flags = mf.flags;
      e.gpa = mf.gpa;
      e.faultSize = mf.size;
    } else if (err == EINTR) {
      e.kind = VcpuExit::Kind::Intr;
    } else {
      e.kind = VcpuExit::Kind::Error;
      e.err = err;
    }
    return e;
  }
  switch (run->exit_reason) {
    case KVM_EXIT_IO: {
      e.kind = VcpuExit::Kind::Io;
      e.port = run->io.port;
      e.size = run->io.size;
      e.direction = run->io.direction;
      e.count = run->io.count;
      uint64_t off = run->io.data_offset;
      uint64_t n = static_cast<uint64_t>(e.size) * e.count;
      if (off <= runSize && n <= runSize - off) e.data.assign(base + off, base + off + n);
      break;
    }
    case KVM_EXIT_MMIO: {
      e.kind = VcpuExit::Kind::Mmio;
      e.physAddr = run->mmio.phys_addr;
      e.len = run->mmio.len;
      e.isWrite = run->mmio.is_write != 0;
      size_t n = e.len < sizeof run->mmio.data ? e.len : sizeof run->mmio.data;
      e.data.assign(run->mmio.data, run->mmio.data + n);
      break;
    }
    case KVM_EXIT_HLT:
      e.kind = VcpuExit::Kind::Hlt;
      break;
    case KVM_EXIT_SHUTDOWN:
      e.kind = VcpuExit::Kind::Shutdown;
      break;
    case KVM_EXIT_INTERNAL_ERROR: {
      e.kind = VcpuExit::Kind::InternalError;
      e.suberror = run->internal.suberror;
      uint32_t n = run->internal.ndata;
      if (n > 16) n = 16;
      e.internalData.assign(run->internal.data, run->internal.data + n);
      break;
    }
    case KVM_EXIT_FAIL_ENTRY:
      e.kind = VcpuExit::Kind::FailEntry;
      e.failReason = run->fail_entry.hardware_entry_failure_reason;
      break;
    case KVM_EXIT_INTR:
      e.kind = VcpuExit::Kind::Intr;
      break;
    default:
      e.kind = VcpuExit::Kind::Other;
      break;
  }
  return e;
}
