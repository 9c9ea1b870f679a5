// VcpuExit: one KVM_RUN's outcome decoded from struct kvm_run, as plain data (addon.cc turns it into
// the VcpuExit union of harness/backend.ts).
#pragma once

#include <linux/kvm.h>

#include <cstddef>
#include <cstdint>
#include <vector>

struct VcpuExit {
  enum class Kind { Io, Mmio, Hlt, Shutdown, InternalError, MemoryFault, Intr, FailEntry, Other, Error };
  Kind kind = Kind::Other;
  /** Error: KVM_RUN's errno. MemoryFault: EFAULT or EHWPOISON. */
  int err = 0;
  uint32_t exitReason = 0;
  // io
  uint16_t port = 0;
  uint8_t size = 0;
  uint8_t direction = 0;
  uint32_t count = 0;
  // mmio
  uint64_t physAddr = 0;
  uint32_t len = 0;
  bool isWrite = false;
  /** io: size * count bytes at data_offset; mmio: len bytes of mmio.data. */
  std::vector<uint8_t> data;
  // internal_error
  uint32_t suberror = 0;
  std::vector<uint64_t> internalData;
  // memory_fault
  uint64_t flags = 0;
  uint64_t gpa = 0;
  uint64_t faultSize = 0;
  // fail_entry
  uint64_t failReason = 0;
};

/**
 * The outcome of a KVM_RUN that returned `ret` with `err` (errno when ret < 0), read from the vCPU's
 * `run` of `runSize` bytes. Call it on the thread that issued KVM_RUN, before the next one.
 */
VcpuExit decodeVcpuExit(const struct kvm_run* run, size_t runSize, int ret, int err);
