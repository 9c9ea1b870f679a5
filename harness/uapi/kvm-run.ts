// include/uapi/linux/kvm.h: struct kvm_run (non-s390), the vCPU's mmap()ed exit record: its header and
// the members of its exit union that kvmconf reads (io, mmio, internal, memory_fault, fail_entry).
//
// `kvm_run` spans the header and the 256-byte union, bytes 0..287 (offsetof(kvm_valid_regs) = 288); the
// sync-regs area after it is not used here. Each union member is a view of those same 288 bytes with
// its members at their offsets in kvm_run (io.port at 34, not 2): one number per member to check, and
// the same number a reader of the mmap()ed bytes (the native backend, a hexdump) sees.
// Source: shared/reference/upstream-selftests.md §0.4, §F.5 (KVM_EXIT_MEMORY_FAULT).

import {
  KVM_EXIT_FAIL_ENTRY,
  KVM_EXIT_INTERNAL_ERROR,
  KVM_EXIT_IO,
  KVM_EXIT_MEMORY_FAULT,
  KVM_EXIT_MMIO,
} from './kvm.ts'
import { decodeStruct, defineLayout, writeStruct, type StructInput, type StructValue } from './layout.ts'

/** Where the exit union starts and ends in struct kvm_run. */
export const KVM_RUN_EXIT_UNION_OFFSET = 32
export const KVM_RUN_EXIT_UNION_SIZE = 256
const SPAN = KVM_RUN_EXIT_UNION_OFFSET + KVM_RUN_EXIT_UNION_SIZE

export const kvm_run = defineLayout('kvm_run', SPAN, {
  requestInterruptWindow: { offset: 0, type: 'u8' }, //        __u8 request_interrupt_window;   (in)
  immediateExit: { offset: 1, type: 'u8' }, //                 __u8 immediate_exit;             (in)
  padding1: { offset: 2, type: 'u8', count: 6 }, //            __u8 padding1[6];
  exitReason: { offset: 8, type: 'u32' }, //                   __u32 exit_reason;               (out)
  readyForInterruptInjection: { offset: 12, type: 'u8' }, //   __u8 ready_for_interrupt_injection;
  ifFlag: { offset: 13, type: 'u8' }, //                       __u8 if_flag;
  flags: { offset: 14, type: 'u16' }, //                       __u16 flags;
  cr8: { offset: 16, type: 'u64' }, //                         __u64 cr8;                       (in/out)
  apicBase: { offset: 24, type: 'u64' }, //                    __u64 apic_base;
  // union { ... } at 32..287: the views below.
})

/** KVM_EXIT_IO: the data is in the kvm_run mapping at `dataOffset`, `count` items of `size` bytes. */
export const kvm_run_io = defineLayout('kvm_run.io', SPAN, {
  direction: { offset: 32, type: 'u8' }, //     __u8 direction;  (KVM_EXIT_IO_IN / _OUT)
  size: { offset: 33, type: 'u8' }, //          __u8 size;       (bytes per item)
  port: { offset: 34, type: 'u16' }, //         __u16 port;
  count: { offset: 36, type: 'u32' }, //        __u32 count;
  dataOffset: { offset: 40, type: 'u64' }, //   __u64 data_offset;  (relative to the kvm_run start)
})

/** KVM_EXIT_MMIO. */
export const kvm_run_mmio = defineLayout('kvm_run.mmio', SPAN, {
  physAddr: { offset: 32, type: 'u64' }, //          __u64 phys_addr;
  data: { offset: 40, type: 'u8', count: 8 }, //     __u8 data[8];
  len: { offset: 48, type: 'u32' }, //               __u32 len;
  isWrite: { offset: 52, type: 'u8' }, //            __u8 is_write;
})

/** KVM_EXIT_INTERNAL_ERROR: `ndata` of `data` are meaningful (KVM_CAP_INTERNAL_ERROR_DATA). */
export const kvm_run_internal = defineLayout('kvm_run.internal', SPAN, {
  suberror: { offset: 32, type: 'u32' }, //           __u32 suberror;  (KVM_INTERNAL_ERROR_*)
  ndata: { offset: 36, type: 'u32' }, //              __u32 ndata;
  data: { offset: 40, type: 'u64', count: 16 }, //    __u64 data[16];
})

/**
 * KVM_EXIT_MEMORY_FAULT: KVM_RUN returned -1 with EFAULT or EHWPOISON and [gpa, gpa + size) could not
 * be resolved. flags: KVM_MEMORY_EXIT_FLAG_PRIVATE (kvm.ts), KVM_MEMORY_EXIT_FLAG_USERFAULT (series.ts).
 */
export const kvm_run_memory_fault = defineLayout('kvm_run.memory_fault', SPAN, {
  flags: { offset: 32, type: 'u64' }, //   __u64 flags;
  gpa: { offset: 40, type: 'u64' }, //     __u64 gpa;
  size: { offset: 48, type: 'u64' }, //    __u64 size;
})

/** KVM_EXIT_FAIL_ENTRY: VM entry failed (x86: the VMX/SVM exit qualification). */
export const kvm_run_fail_entry = defineLayout('kvm_run.fail_entry', SPAN, {
  hardwareEntryFailureReason: { offset: 32, type: 'u64' }, //   __u64 hardware_entry_failure_reason;
  cpu: { offset: 40, type: 'u32' }, //                          __u32 cpu;
})

export type KvmRun = StructValue<typeof kvm_run>
export type KvmRunIo = StructValue<typeof kvm_run_io>
export type KvmRunMmio = StructValue<typeof kvm_run_mmio>
export type KvmRunInternal = StructValue<typeof kvm_run_internal>
export type KvmRunMemoryFault = StructValue<typeof kvm_run_memory_fault>
export type KvmRunFailEntry = StructValue<typeof kvm_run_fail_entry>

/** kvm_run.exit_reason with the union member it selects; `other` for reasons without one decoded here. */
export type KvmRunExit =
  | { kind: 'io'; exitReason: typeof KVM_EXIT_IO; io: KvmRunIo }
  | { kind: 'mmio'; exitReason: typeof KVM_EXIT_MMIO; mmio: KvmRunMmio }
  | { kind: 'internal_error'; exitReason: typeof KVM_EXIT_INTERNAL_ERROR; internal: KvmRunInternal }
  | { kind: 'memory_fault'; exitReason: typeof KVM_EXIT_MEMORY_FAULT; memoryFault: KvmRunMemoryFault }
  | { kind: 'fail_entry'; exitReason: typeof KVM_EXIT_FAIL_ENTRY; failEntry: KvmRunFailEntry }
  | { kind: 'other'; exitReason: number }

/** The same, as an encoder takes it: u64 members may be numbers, absent members are zero. */
export type KvmRunExitInput =
  | { kind: 'io'; io: StructInput<typeof kvm_run_io> }
  | { kind: 'mmio'; mmio: StructInput<typeof kvm_run_mmio> }
  | { kind: 'internal_error'; internal: StructInput<typeof kvm_run_internal> }
  | { kind: 'memory_fault'; memoryFault: StructInput<typeof kvm_run_memory_fault> }
  | { kind: 'fail_entry'; failEntry: StructInput<typeof kvm_run_fail_entry> }
  | { kind: 'other'; exitReason: number }

const DECODED_REASONS: ReadonlySet<number> = new Set([
  KVM_EXIT_IO,
  KVM_EXIT_MMIO,
  KVM_EXIT_INTERNAL_ERROR,
  KVM_EXIT_MEMORY_FAULT,
  KVM_EXIT_FAIL_ENTRY,
])

/** Reads exit_reason and the union member it selects from a kvm_run (at least 288 bytes at `offset`). */
export function decodeKvmRunExit(bytes: Uint8Array, offset = 0): KvmRunExit {
  const { exitReason } = decodeStruct(kvm_run, bytes, offset)
  switch (exitReason) {
    case KVM_EXIT_IO:
      return { kind: 'io', exitReason, io: decodeStruct(kvm_run_io, bytes, offset) }
    case KVM_EXIT_MMIO:
      return { kind: 'mmio', exitReason, mmio: decodeStruct(kvm_run_mmio, bytes, offset) }
    case KVM_EXIT_INTERNAL_ERROR:
      return { kind: 'internal_error', exitReason, internal: decodeStruct(kvm_run_internal, bytes, offset) }
    case KVM_EXIT_MEMORY_FAULT:
      return { kind: 'memory_fault', exitReason, memoryFault: decodeStruct(kvm_run_memory_fault, bytes, offset) }
    case KVM_EXIT_FAIL_ENTRY:
      return { kind: 'fail_entry', exitReason, failEntry: decodeStruct(kvm_run_fail_entry, bytes, offset) }
    default:
      return { kind: 'other', exitReason }
  }
}

/**
 * Writes exit_reason and the member into a kvm_run, leaving every other byte alone: what KVM does on an
 * exit, for the emulator and for tests. `other` may not name a reason that has a member decoded here,
 * since decoding would then read a member the encoder never wrote.
 */
export function writeKvmRunExit(exit: KvmRunExitInput, bytes: Uint8Array, offset = 0): void {
  switch (exit.kind) {
    case 'io':
      writeStruct(kvm_run_io, exit.io, bytes, offset)
      return writeStruct(kvm_run, { exitReason: KVM_EXIT_IO }, bytes, offset)
    case 'mmio':
      writeStruct(kvm_run_mmio, exit.mmio, bytes, offset)
      return writeStruct(kvm_run, { exitReason: KVM_EXIT_MMIO }, bytes, offset)
    case 'internal_error':
      writeStruct(kvm_run_internal, exit.internal, bytes, offset)
      return writeStruct(kvm_run, { exitReason: KVM_EXIT_INTERNAL_ERROR }, bytes, offset)
    case 'memory_fault':
      writeStruct(kvm_run_memory_fault, exit.memoryFault, bytes, offset)
      return writeStruct(kvm_run, { exitReason: KVM_EXIT_MEMORY_FAULT }, bytes, offset)
    case 'fail_entry':
      writeStruct(kvm_run_fail_entry, exit.failEntry, bytes, offset)
      return writeStruct(kvm_run, { exitReason: KVM_EXIT_FAIL_ENTRY }, bytes, offset)
    case 'other':
      if (DECODED_REASONS.has(exit.exitReason)) {
        throw new RangeError(`kvm_run.exitReason: ${exit.exitReason} has a union member; give its kind instead of 'other'`)
      }
      return writeStruct(kvm_run, { exitReason: exit.exitReason }, bytes, offset)
  }
}

/** A fresh zeroed 288-byte kvm_run prefix holding the exit. */
export function encodeKvmRunExit(exit: KvmRunExitInput): Uint8Array {
  const bytes = new Uint8Array(kvm_run.size)
  writeKvmRunExit(exit, bytes)
  return bytes
}
