// demand_paging_test's run_test() around Backend.runDemandPaging: defaults and validation (as upstream's
// option parsing and asserts), the plan every backend follows (memstress region + userfaultfds), the
// KVM Userfault probe, and the errors a run rejects with. Types: harness/demand-paging-types.ts.

import type { Backend, BackendInfo, Backing, HostMapping, UserfaultBitmap, VcpuExit, Vm } from '../backend.ts'
import type {
  DemandPagingConfig, DemandPagingResult, DemandPagingSample, DemandPagingVcpuResult, ResolvedDemandPagingConfig,
  UserfaultExitViolation,
} from '../demand-paging-types.ts'
import { KvmError } from '../errors.ts'
import { KVM_MEM_USERFAULT } from '../uapi/series.ts'
import { probeKvmUserfault } from './userfault.ts'
import {
  DEFAULT_PER_VCPU_MEM_SIZE, MEMSTRESS_GUEST_PAGE_SIZE, memstressLayout, type MemstressLayout,
} from './memstress.ts'
import {
  GUEST_DATA_PROTOTYPE_BYTE, minorPrefaultRanges, uffdSetupPlan, type UffdDescPlan, type UffdSetupPlan,
} from './userfaultfd-util.ts'

/** The default deadline of a whole run. */
export const DEFAULT_DEMAND_PAGING_TIMEOUT_MS = 600_000

const BACKINGS: readonly Backing[] = ['anonymous', 'anonymous_thp', 'anonymous_hugetlb', 'shmem', 'shared_hugetlb']
const SHARED_BACKINGS: readonly Backing[] = ['shmem', 'shared_hugetlb']
/** x86-64's PMD size: THP and the default hugetlb page. */
const HUGE_PAGE_SIZE = 2 * 1024 * 1024

/** get_backing_src_pagesz(): the bytes one fault of `backing` maps, and so one resolution covers. */
export function backingPageSize(backing: Backing, hostPageSize: number): number {
  return backing === 'anonymous' || backing === 'shmem' ? hostPageSize : HUGE_PAGE_SIZE
}

export function isSharedBacking(backing: Backing): boolean {
  return SHARED_BACKINGS.includes(backing)
}

/**
 * Fills in upstream's defaults and checks every field as upstream's option parsing and asserts do:
 * TypeError for a wrong type, RangeError for a wrong value (MINOR without shared memory gets upstream's
 * own message). `hostPageSize` is BackendInfo.pageSize.
 */
export function resolveDemandPagingConfig(config: DemandPagingConfig, hostPageSize: number): ResolvedDemandPagingConfig {
  if (typeof config !== 'object' || config === null) throw new TypeError('demand paging config: not an object')
  const vcpus = integer(config.vcpus ?? 1, 'vcpus', 1, 1 << 20)
  const vcpuMemoryBytes = bytes(config.vcpuMemoryBytes ?? DEFAULT_PER_VCPU_MEM_SIZE, 'vcpuMemoryBytes')
  const backing = config.backing ?? 'anonymous'
  if (!BACKINGS.includes(backing)) throw new TypeError(`backing: ${String(backing)} is not one of ${BACKINGS.join(', ')}`)
  const uffdMode = config.uffdMode ?? null
  if (uffdMode !== null && uffdMode !== 'MISSING' && uffdMode !== 'MINOR') {
    throw new TypeError(`uffdMode: ${String(uffdMode)} is not 'MISSING', 'MINOR' or null`)
  }
  if (uffdMode === 'MINOR' && !isSharedBacking(backing)) {
    throw new RangeError('userfaultfd MINOR mode requires shared memory; pick a different -s')
  }
  const overlap = flag(config.overlap, 'overlap')
  const singleUffd = flag(config.singleUffd, 'singleUffd') || overlap
  const readersPerUffd = integer(config.readersPerUffd ?? 1, 'readersPerUffd', 1, 1024)
  const uffdDelayUs = integer(config.uffdDelayUs ?? 0, 'uffdDelayUs', 0, 2 ** 32 - 1)
  const pinning = resolvePinning(config.pinning ?? null, vcpus)
  const kvmUserfault = flag(config.kvmUserfault, 'kvmUserfault')
  const write = config.write === undefined ? true : flag(config.write, 'write')
  const samplePages = integer(config.samplePages ?? 0, 'samplePages', 0, 4096)
  const timeoutMs = integer(config.timeoutMs ?? DEFAULT_DEMAND_PAGING_TIMEOUT_MS, 'timeoutMs', 1, 2 ** 31 - 1)
  const unit = BigInt(backingPageSize(backing, hostPageSize))
  if (vcpuMemoryBytes % BigInt(MEMSTRESS_GUEST_PAGE_SIZE) !== 0n || vcpuMemoryBytes % unit !== 0n) {
    throw new RangeError(`vcpuMemoryBytes: ${vcpuMemoryBytes} is not a multiple of the ${backing} page size (${unit})`)
  }
  return {
    vcpus, vcpuMemoryBytes, backing, uffdMode, singleUffd, readersPerUffd, uffdDelayUs, overlap, pinning,
    kvmUserfault, write, samplePages, timeoutMs,
  }
}

/**
 * The config a backend runs: upstream's defaults and checks, and a RangeError when this backend cannot
 * create the backing it asks for.
 */
export function resolveDemandPagingOn(info: Pick<BackendInfo, 'pageSize' | 'backings'>,
  config: DemandPagingConfig): ResolvedDemandPagingConfig {
  const resolved = resolveDemandPagingConfig(config, info.pageSize)
  const unavailable = backingUnavailable(info, resolved.backing)
  if (unavailable !== undefined) throw new RangeError(unavailable)
  return resolved
}

/** Why `backing` cannot back the region on this backend, or undefined when it can. */
export function backingUnavailable(info: Pick<BackendInfo, 'backings'>, backing: Backing): string | undefined {
  if (info.backings.includes(backing)) return undefined
  const why = backing.endsWith('hugetlb') ? ' (no hugetlb pages are reserved: /proc/sys/vm/nr_hugepages)' : ''
  return `backing ${backing} is not available here${why}; available: ${info.backings.join(', ')}`
}

/** What a backend builds for a resolved config. */
export interface DemandPagingPlan {
  layout: MemstressLayout
  /** demand_paging_size: the bytes one fault maps and one resolution covers. */
  unitBytes: number
  /** null without -u. */
  uffd: UffdSetupPlan | null
  /** MINOR: the ranges to fill with the prototype through the alias mapping first. */
  prefault: UffdDescPlan[]
}

export function demandPagingPlan(config: ResolvedDemandPagingConfig, hostPageSize: number): DemandPagingPlan {
  const unitBytes = backingPageSize(config.backing, hostPageSize)
  const layout = memstressLayout({
    nrVcpus: config.vcpus, vcpuMemoryBytes: config.vcpuMemoryBytes, backingPageSize: unitBytes, partition: !config.overlap,
  })
  const uffd = config.uffdMode === null
    ? null
    : uffdSetupPlan({
      layout, mode: config.uffdMode, singleUffd: config.singleUffd, overlap: config.overlap,
      readersPerUffd: config.readersPerUffd, delayUs: config.uffdDelayUs,
    })
  const prefault = config.uffdMode === 'MINOR' ? minorPrefaultRanges(layout, config.overlap) : []
  return { layout, unitBytes, uffd, prefault }
}

/** Upstream's two rates: vCPU 0's pages over the elapsed time, and that times the vCPUs. */
export function demandPagingRates(vcpu0Pages: number, vcpus: number, elapsedNs: bigint): { perVcpuRate: number; overallRate: number } {
  const seconds = Number(elapsedNs) / 1e9
  const perVcpuRate = seconds > 0 ? vcpu0Pages / seconds : 0
  return { perVcpuRate, overallRate: perVcpuRate * vcpus }
}

// ---------------------------------------------------------------------------------------------------
// Errors a run rejects with

const TIMEOUT = 'DemandPagingTimeout'
const NO_USERFAULT = 'KvmUserfaultUnsupported'

/** The run did not finish by its deadline; the backend stopped it and freed what it made. */
export class DemandPagingTimeout extends Error {
  override readonly name = TIMEOUT
  readonly code = 'ETIMEDOUT'
  constructor(readonly timeoutMs: number, readonly vcpusSynced: number, readonly vcpus: number) {
    super(
      `demand paging run did not finish within ${timeoutMs} ms (${vcpusSynced} of ${vcpus} vCPUs reached GUEST_SYNC): ` +
        'stopped (vCPUs kicked, readers stopped, the region unregistered)',
    )
  }

  static is(e: unknown): e is DemandPagingTimeout {
    return typeof e === 'object' && e !== null && (e as { name?: unknown }).name === TIMEOUT
  }
}

/** -k on a kernel whose KVM_SET_USER_MEMORY_REGION2 refuses KVM_MEM_USERFAULT (upstream: TEST_REQUIRE(KVM_CAP_USERFAULT)). */
export class KvmUserfaultUnsupported extends Error {
  override readonly name = NO_USERFAULT
  constructor(readonly code: string, readonly op: string) {
    super(`this kernel lacks KVM Userfault (KVM_MEM_USERFAULT refused by ${op}: ${code})`)
  }

  static is(e: unknown): e is KvmUserfaultUnsupported {
    return typeof e === 'object' && e !== null && (e as { name?: unknown }).name === NO_USERFAULT
  }
}

/**
 * The refusal -k would reject with on this backend, or null when the kernel accepts KVM_MEM_USERFAULT
 * (the backend-neutral probe of harness/kvm-util/userfault.ts decides).
 */
export async function kvmUserfaultRefusal(kvm: Backend): Promise<KvmUserfaultUnsupported | null> {
  const probe = await probeKvmUserfault(kvm)
  return probe.supported ? null : new KvmUserfaultUnsupported(probe.code, probe.op)
}

/**
 * Backend.runDemandPaging, or ENOSYS naming the feature when the backend does not list 'demand-paging'
 * (tests gate on the feature first, so this only catches a test that forgot to).
 */
export async function runDemandPaging(kvm: Backend, config: DemandPagingConfig): Promise<DemandPagingResult> {
  const info = await kvm.info()
  if (!info.features.includes('demand-paging') || kvm.runDemandPaging === undefined) {
    throw new KvmError('ENOSYS', 'runDemandPaging', `the ${kvm.name} backend does not list 'demand-paging' in info().features`)
  }
  return kvm.runDemandPaging(config)
}

/** What a resolved page should hold after a write pass: the guest's u64, then the handler's bytes. */
export function expectedFillByte(config: Pick<ResolvedDemandPagingConfig, 'uffdMode' | 'kvmUserfault'>): number {
  return config.uffdMode !== null || config.kvmUserfault ? 0xab : 0x00
}


// ---------------------------------------------------------------------------------------------------

function integer(v: unknown, what: string, min: number, max: number): number {
  if (typeof v !== 'number') throw new TypeError(`${what}: ${String(v)} is not a number`)
  if (!Number.isInteger(v) || v < min || v > max) throw new RangeError(`${what}: ${v} is not an integer in [${min}, ${max}]`)
  return v
}

function bytes(v: unknown, what: string): bigint {
  if (typeof v !== 'bigint' && typeof v !== 'number') throw new TypeError(`${what}: ${String(v)} is not a number or bigint`)
  if (typeof v === 'number' && !Number.isSafeInteger(v)) throw new RangeError(`${what}: ${v} is not a safe integer`)
  const b = BigInt(v)
  if (b <= 0n || b >= 1n << 46n) throw new RangeError(`${what}: ${b} is not in [1, 2^46)`)
  return b
}

function flag(v: unknown, what: string): boolean {
  if (v === undefined) return false
  if (typeof v !== 'boolean') throw new TypeError(`${what}: ${String(v)} is not a boolean`)
  return v
}

function resolvePinning(p: unknown, vcpus: number): ResolvedDemandPagingConfig['pinning'] {
  if (p === null) return null
  if (typeof p !== 'object' || !Array.isArray((p as { vcpus?: unknown }).vcpus)) {
    throw new TypeError('pinning: expected { vcpus: number[], main?: number }')
  }
  const { vcpus: cpus, main } = p as { vcpus: unknown[]; main?: unknown }
  if (cpus.length !== vcpus) {
    throw new RangeError(`pinning: ${cpus.length} pCPUs for ${vcpus} vCPUs (one per vCPU, then optionally the main thread's)`)
  }
  return {
    vcpus: cpus.map((c, i) => integer(c, `pinning.vcpus[${i}]`, 0, 1023)),
    main: main === undefined || main === null ? null : integer(main, 'pinning.main', 0, 1023),
  }
}

/** What a backend measured in one run, in the backend-neutral words DemandPagingResult is built from. */
export interface DemandPagingMeasurement {
  elapsedNs: bigint
  /** Per vCPU in plan order: its own time, and the exit that stopped it short of GUEST_SYNC (or null). */
  vcpus: { elapsedNs: bigint; exit: VcpuExit | null; userfaultExits: number }[]
  uffd: {
    uffds: number; units: number; faults: number; resolved: number; eexist: number; wakes: number
    unitsOnce: number; unitsMore: number; unitsNever: number
  }
  kvmUserfault: {
    exits: number; pagesWithExit: number; pagesWithMoreExits: number
    violations: UserfaultExitViolation[]; violationCount: number
  }
  pagesWithoutGuestWrite: number | null
}

/** The DemandPagingResult of a run: the one shape every backend reports, rates as upstream computes them. */
export function demandPagingResult(config: ResolvedDemandPagingConfig, plan: DemandPagingPlan,
  m: DemandPagingMeasurement, samples: DemandPagingSample[]): DemandPagingResult {
  const { layout } = plan
  const vcpus = layout.vcpuArgs.map((args, i): DemandPagingVcpuResult => {
    const v = m.vcpus[i]!
    const outcome = v.exit === null
      ? { kind: 'synced' as const, elapsedNs: v.elapsedNs }
      : { kind: 'exit' as const, exit: v.exit }
    const seconds = Number(v.elapsedNs) / 1e9
    return {
      id: args.vcpuIdx, gpa: args.gpa, pages: args.pages, outcome,
      rate: outcome.kind === 'synced' && seconds > 0 ? args.pages / seconds : null,
      userfaultExits: v.userfaultExits,
    }
  })
  const { perVcpuRate, overallRate } = demandPagingRates(layout.vcpuArgs[0]!.pages, config.vcpus, m.elapsedNs)
  const { uffd: u, kvmUserfault: k } = m
  return {
    config,
    region: { slot: layout.slot, gpa: layout.gpa, size: layout.size, guestPageSize: layout.guestPageSize },
    elapsedNs: m.elapsedNs,
    vcpus,
    perVcpuRate,
    overallRate,
    uffd: plan.uffd === null ? null : {
      uffds: u.uffds, readersPerUffd: config.readersPerUffd, unitBytes: plan.unitBytes, units: u.units,
      faults: u.faults, resolved: u.resolved, eexist: u.eexist, wakes: u.wakes,
      unitsResolvedOnce: u.unitsOnce, unitsResolvedMoreThanOnce: u.unitsMore, unitsNeverResolved: u.unitsNever,
    },
    kvmUserfault: !config.kvmUserfault ? null : {
      exits: k.exits, pagesWithExit: k.pagesWithExit, pagesWithMoreThanOneExit: k.pagesWithMoreExits,
      violations: k.violations, violationCount: k.violationCount,
    },
    pagesWithoutGuestWrite: m.pagesWithoutGuestWrite,
    samples,
  }
}

/** A run's VM as memstress_create_vm() and demand_paging_test leave it, before any vCPU exists. */
export interface DemandPagingVm {
  plan: DemandPagingPlan
  vm: Vm
  /** The host memory behind the test memslot. */
  region: HostMapping
  /** The userfault bitmap under -k (every bit set), else null. */
  bitmap: UserfaultBitmap | null
  /** Closes the VM, then the memory behind its memslots. */
  close(): Promise<void>
}

/**
 * The set-up every backend's runDemandPaging shares: the -k probe, the plan, the VM, the region's host
 * memory with the page cache filled through an alias for MINOR (for every vCPU's range: the series'
 * prefault fix), and the test memslot (with KVM_MEM_USERFAULT and a full bitmap under -k). The VM has no
 * vCPUs yet: how a backend runs them is its own affair. On a failure everything made is freed.
 */
export async function createDemandPagingVm(kvm: Backend, resolved: ResolvedDemandPagingConfig,
  pageSize: number): Promise<DemandPagingVm> {
  if (resolved.kvmUserfault) {
    const refusal = await kvmUserfaultRefusal(kvm)
    if (refusal !== null) throw refusal
  }
  const plan = demandPagingPlan(resolved, pageSize)
  const { layout } = plan
  const vm = await kvm.createVm()
  const made: { close(): Promise<void> }[] = []
  const close = async () => {
    await vm.close() // the memslots go first, then the memory behind them
    for (const obj of made.reverse()) await obj.close()
  }
  try {
    const region = await kvm.mmap({ size: layout.size, backing: resolved.backing })
    made.push(region)
    if (plan.prefault.length > 0) {
      // The alias only fills the page cache; unmapped again before the run, so that the vCPUs' MINOR
      // faults map pages no other mapping of this process holds.
      const alias = await region.alias()
      try {
        for (const r of plan.prefault) await alias.fill(r.gpa - layout.gpa, r.len, GUEST_DATA_PROTOTYPE_BYTE)
      } finally {
        await alias.close()
      }
    }
    let bitmap: UserfaultBitmap | null = null
    if (resolved.kvmUserfault) {
      // enable_userfault(): every page starts as userfault.
      bitmap = await kvm.createUserfaultBitmap(Number(layout.size / BigInt(pageSize)))
      made.push(bitmap)
      await bitmap.fill(true)
      await vm.setUserMemoryRegion2({
        slot: layout.slot, flags: KVM_MEM_USERFAULT, guestPhysAddr: layout.gpa, memorySize: layout.size,
        userspaceAddr: region.addr, userfaultBitmap: bitmap.addr,
      })
    } else {
      await vm.setUserMemoryRegion({
        slot: layout.slot, flags: 0, guestPhysAddr: layout.gpa, memorySize: layout.size, userspaceAddr: region.addr,
      })
    }
    return { plan, vm, region, bitmap, close }
  } catch (e) {
    await close()
    throw e
  }
}

/** `n` pages of the region read back after a run, spread evenly from the first to the last. */
export async function readSamples(region: HostMapping, plan: DemandPagingPlan, n: number): Promise<DemandPagingSample[]> {
  const pageSize = plan.layout.guestPageSize
  const pages = Number(plan.layout.size / BigInt(pageSize))
  const picks = new Set<number>()
  for (let k = 0; k < Math.min(n, pages); k++) picks.add(n === 1 ? 0 : Math.floor((k * (pages - 1)) / (n - 1)))
  const samples: DemandPagingSample[] = []
  for (const p of [...picks].sort((a, b) => a - b)) {
    const offset = BigInt(p) * BigInt(pageSize)
    samples.push({ gpa: plan.layout.gpa + offset, bytes: await region.read(offset, pageSize) })
  }
  return samples
}
