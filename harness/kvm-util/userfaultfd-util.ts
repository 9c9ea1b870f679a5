// userfaultfd_util: upstream's lib/userfaultfd_util.c as demand_paging_test drives it
// (shared/reference/upstream-selftests.md §B.1, §B.2, §A.2 steps 3-4), backend-neutral.
//
// What a backend sets up before the vCPUs run: which userfaultfds cover which part of the memstress
// region, in which mode, with how many readers, and which ioctl resolves a fault. The readers
// themselves run inside the backend (uffd_handler_thread_fn: epoll on the uffd with EPOLLEXCLUSIVE plus
// a stop pipe; read one uffd_msg; sleep the delay; resolve; EEXIST tolerated).

import type { UffdMode } from '../demand-paging-types.ts'
import {
  _UFFDIO_CONTINUE, _UFFDIO_COPY, UFFDIO_REGISTER_MODE_MINOR, UFFDIO_REGISTER_MODE_MISSING,
} from '../uapi/userfaultfd.ts'
import type { MemstressLayout } from './memstress.ts'

/** The byte demand_paging_test's guest_data_prototype is filled with: what a resolved page holds. */
export const GUEST_DATA_PROTOTYPE_BYTE = 0xab

/** One uffd_desc: a userfaultfd registered over [gpa, gpa + len) of the region. */
export interface UffdDescPlan {
  gpa: bigint
  len: bigint
}

export interface UffdSetupPlan {
  mode: UffdMode
  /** UFFDIO_REGISTER_MODE_MISSING or _MINOR. */
  registerMode: number
  /** The bit uffdio_register.ioctls must contain: 1 << _UFFDIO_COPY (MISSING) or 1 << _UFFDIO_CONTINUE (MINOR). */
  expectedIoctl: bigint
  descs: UffdDescPlan[]
  readersPerUffd: number
  delayUs: number
}

export function uffdRegisterMode(mode: UffdMode): number {
  return mode === 'MISSING' ? UFFDIO_REGISTER_MODE_MISSING : UFFDIO_REGISTER_MODE_MINOR
}

/** uffd_setup_demand_paging()'s expected_ioctls check. */
export function uffdExpectedIoctl(mode: UffdMode): bigint {
  return 1n << BigInt(mode === 'MISSING' ? _UFFDIO_COPY : _UFFDIO_CONTINUE)
}

/**
 * demand_paging_test's run_test(), step 4: `num_uffds = single_uffd ? 1 : nr_vcpus` userfaultfds, each
 * over `nr_vcpus * per_vcpu_bytes / num_uffds` bytes starting at vCPU i's slice. Overlap (-o) forces a
 * single userfaultfd (every vCPU's slice is the whole region).
 */
export function uffdSetupPlan(opts: {
  layout: MemstressLayout
  mode: UffdMode
  singleUffd: boolean
  overlap: boolean
  readersPerUffd: number
  delayUs: number
}): UffdSetupPlan {
  const { layout, mode } = opts
  const single = opts.singleUffd || opts.overlap
  const numUffds = single ? 1 : layout.vcpuArgs.length
  const len = layout.size / BigInt(numUffds)
  const descs = layout.vcpuArgs.slice(0, numUffds).map((v): UffdDescPlan => ({ gpa: v.gpa, len }))
  return {
    mode,
    registerMode: uffdRegisterMode(mode),
    expectedIoctl: uffdExpectedIoctl(mode),
    descs,
    readersPerUffd: opts.readersPerUffd,
    delayUs: opts.delayUs,
  }
}

/**
 * The ranges MINOR mode fills with the prototype through the alias mapping before the vCPUs run, so
 * that their faults are minor ones. This is the series' fixed prefault loop ("Fix prefault_mem logic",
 * §A.2 step 3): every vCPU's slice, or just the first when they overlap (it is the whole region).
 * Upstream looped over `num_uffds` slices, so with -a only vCPU 0's slice was filled.
 */
export function minorPrefaultRanges(layout: MemstressLayout, overlap: boolean): UffdDescPlan[] {
  const slices = overlap ? layout.vcpuArgs.slice(0, 1) : layout.vcpuArgs
  return slices.map((v) => ({ gpa: v.gpa, len: BigInt(v.pages) * BigInt(layout.guestPageSize) }))
}
