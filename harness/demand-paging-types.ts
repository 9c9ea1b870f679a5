// The demand-paging workload's part of the Backend contract (Backend.runDemandPaging): what a run is
// asked to do and what it reports. It is upstream's demand_paging_test (shared/reference/
// upstream-selftests.md §A, with the KVM Userfault series' -k of §A.3) run inside a backend, because its
// per-page path (a vCPU faulting, a reader resolving, the vCPU going on) must not cross into JavaScript.
//
// The option letters in the comments are demand_paging_test's; `kvmconf demand-paging` takes the same.
// Defaults, validation and the memstress/userfaultfd plan every backend follows live in
// harness/kvm-util/ (demand-paging.ts, memstress.ts, userfaultfd-util.ts).

import type { Backing, U64In, VcpuExit } from './backend.ts'

/** -u: how faults on the test region reach the handler (UFFDIO_REGISTER_MODE_MISSING or _MINOR). */
export type UffdMode = 'MISSING' | 'MINOR'

/** What a test asks of Backend.runDemandPaging; every field is optional and defaults as upstream. */
export interface DemandPagingConfig {
  /** -v: how many vCPUs, each with its own thread (default 1; at most KVM_CAP_MAX_VCPUS). */
  vcpus?: number
  /** -b: bytes demand-paged per vCPU, a multiple of the backing's page size (default 1 GiB, as upstream). */
  vcpuMemoryBytes?: U64In
  /** -s: the test region's host memory (default 'anonymous'). */
  backing?: Backing
  /** -u: resolve faults through userfaultfd in this mode; `null` (the default) registers nothing. */
  uffdMode?: UffdMode | null
  /** -a: one userfaultfd for the whole region instead of one per vCPU (implied by `overlap`). */
  singleUffd?: boolean
  /** -r: reader threads per userfaultfd, woken one per event (EPOLLEXCLUSIVE); default 1. */
  readersPerUffd?: number
  /** -d: microseconds a reader sleeps before resolving each fault (default 0). */
  uffdDelayUs?: number
  /** -o: every vCPU touches the whole region instead of its own slice; forces a single userfaultfd. */
  overlap?: boolean
  /**
   * -c: pin vCPU i's thread to host CPU `vcpus[i]` (one entry per vCPU) and the thread that waits for
   * them (upstream: the main thread) to `main`.
   */
  pinning?: { vcpus: number[]; main?: number } | null
  /**
   * -k (KVM Userfault series): the test memslot gets KVM_MEM_USERFAULT with every bitmap bit set; each
   * KVM_EXIT_MEMORY_FAULT with exactly KVM_MEMORY_EXIT_FLAG_USERFAULT is resolved in the backend (the
   * page populated, or resolved early through the userfaultfd with DONTWAKE), its bit cleared with
   * release ordering, and the vCPU re-entered.
   */
  kvmUserfault?: boolean
  /** The guest's pass writes 0x0123456789ABCDEF at every page start (true, upstream's default) or reads it. */
  write?: boolean
  /** How many pages of the region to return in `samples` after the run (default 0), spread evenly. */
  samplePages?: number
  /**
   * The deadline of the whole run in milliseconds (default 600,000). A run still going then is stopped
   * (vCPUs kicked, readers stopped, the region unregistered) and rejects with DemandPagingTimeout.
   */
  timeoutMs?: number
}

/** A config with every default filled in and checked (harness/kvm-util/demand-paging.ts). */
export interface ResolvedDemandPagingConfig {
  vcpus: number
  vcpuMemoryBytes: bigint
  backing: Backing
  uffdMode: UffdMode | null
  singleUffd: boolean
  readersPerUffd: number
  uffdDelayUs: number
  overlap: boolean
  pinning: { vcpus: number[]; main: number | null } | null
  kvmUserfault: boolean
  write: boolean
  samplePages: number
  timeoutMs: number
}

/** How one vCPU's pass ended. */
export type DemandPagingVcpuOutcome =
  /** The guest reached GUEST_SYNC after touching every page of its slice. */
  | { kind: 'synced'; elapsedNs: bigint }
  /** KVM_RUN ended some other way (upstream: "Invalid guest sync status"); the pass is incomplete. */
  | { kind: 'exit'; exit: VcpuExit }

export interface DemandPagingVcpuResult {
  id: number
  /** The first GPA of the vCPU's slice (the region's start with `overlap`). */
  gpa: bigint
  /** Guest pages the vCPU's pass touches (upstream memstress_vcpu_args.pages). */
  pages: number
  outcome: DemandPagingVcpuOutcome
  /** pages / the vCPU's own elapsed seconds, `null` unless it synced. */
  rate: number | null
  /** KVM_EXIT_MEMORY_FAULT exits with the USERFAULT flag this vCPU took (0 without -k). */
  userfaultExits: number
}

/** What the userfaultfd side did; `null` in a run without -u. */
export interface DemandPagingUffdStats {
  uffds: number
  readersPerUffd: number
  /** Bytes one resolution covers: the backing's page size (demand_paging_size). */
  unitBytes: number
  /** Units of the region: its size / unitBytes. */
  units: number
  /** UFFD_EVENT_PAGEFAULT messages the readers handled. */
  faults: number
  /** UFFDIO_COPY / UFFDIO_CONTINUE calls that succeeded (the readers' and the -k resolver's). */
  resolved: number
  /** Calls that failed with EEXIST (another resolver was first), tolerated as upstream does. */
  eexist: number
  /** UFFDIO_WAKE calls after a failed resolution of a real event (the series' resolve_uffd_page_request). */
  wakes: number
  unitsResolvedOnce: number
  /** Units more than one call resolved successfully: always 0 on a correct kernel (EEXIST dedups). */
  unitsResolvedMoreThanOnce: number
  unitsNeverResolved: number
}

/** A KVM_EXIT_MEMORY_FAULT that broke the series' promise (§F.3): gpa page aligned, size PAGE_SIZE, flags USERFAULT. */
export interface UserfaultExitViolation {
  vcpu: number
  gpa: bigint
  size: bigint
  flags: bigint
  why: 'flags' | 'gpa not page aligned' | 'size' | 'outside the region'
}

/** What -k saw; `null` in a run without -k. */
export interface DemandPagingUserfaultStats {
  /** KVM_EXIT_MEMORY_FAULT exits with the USERFAULT flag, all vCPUs. */
  exits: number
  /** Host pages of the region that produced at least one exit. */
  pagesWithExit: number
  /** Pages that exited more than once (possible only when vCPUs share pages, with overlap). */
  pagesWithMoreThanOneExit: number
  /** Every exit that broke a rule, up to the first 16; `violationCount` counts them all. */
  violations: UserfaultExitViolation[]
  violationCount: number
}

/** One page of the region as the host reads it after the run. */
export interface DemandPagingSample {
  gpa: bigint
  bytes: Uint8Array
}

export interface DemandPagingResult {
  config: ResolvedDemandPagingConfig
  /** memstress's test region: [gpa, gpa + size), memslot 1. */
  region: { slot: number; gpa: bigint; size: bigint; guestPageSize: number }
  /** From releasing the vCPU threads until the last one joined (CLOCK_MONOTONIC). */
  elapsedNs: bigint
  vcpus: DemandPagingVcpuResult[]
  /** Upstream's "Per-vcpu demand paging rate": vCPU 0's pages / elapsed seconds. */
  perVcpuRate: number
  /** Upstream's "Overall demand paging rate": perVcpuRate × vCPUs. */
  overallRate: number
  uffd: DemandPagingUffdStats | null
  kvmUserfault: DemandPagingUserfaultStats | null
  /** Guest pages whose first u64 is not the guest's value after a write pass; `null` after a read pass. */
  pagesWithoutGuestWrite: number | null
  samples: DemandPagingSample[]
}
