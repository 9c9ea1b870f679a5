// Backend.runDemandPaging on the native backend: JavaScript builds the VM the way memstress does and
// collects the result; the run itself (vCPU threads, userfaultfd readers, the -k resolver) is the
// addon's DemandPagingRun (src/demand-paging-run.h), so nothing per page crosses into JavaScript.
//
// Built here, on the main thread: the VM, the boot memslot with each vCPU's memstress program (compiled
// by guest-code/), the region's host memory as memslot 1 (KVM_MEM_USERFAULT plus a full bitmap with -k),
// and for MINOR the page cache filled with 0xAB through an alias mapping (the series' prefault fix:
// every vCPU's slice). Everything is closed again before the promise settles, whatever happened.
// (Upstream keeps the alias mapped for the VM's lifetime; nothing reads it after the prefault.)

import type { Backend, HostMapping } from '../../harness/backend.ts'
import type {
  DemandPagingConfig, DemandPagingResult, DemandPagingSample, ResolvedDemandPagingConfig,
  UserfaultExitViolation,
} from '../../harness/demand-paging-types.ts'
import { KvmError } from '../../harness/errors.ts'
import {
  backingUnavailable, DemandPagingTimeout, demandPagingPlan, demandPagingResult, kvmUserfaultRefusal,
  type DemandPagingMeasurement,
  resolveDemandPagingConfig, type DemandPagingPlan,
} from '../../harness/kvm-util/demand-paging.ts'
import { MEMSTRESS_WRITE_VALUE, memstressGuestCode } from '../../harness/kvm-util/memstress.ts'
import { UCALL_SYNC } from '../../harness/kvm-util/ucall.ts'
import { GUEST_DATA_PROTOTYPE_BYTE } from '../../harness/kvm-util/userfaultfd-util.ts'
import { KVM_MEM_USERFAULT } from '../../harness/uapi/series.ts'
import { nativeAsync, type RawDemandPagingOutcome, type RawDemandPagingSpec } from './addon.ts'
import type { NativeContext } from './context.ts'
import { compileGuestProgram, MAX_VCPU_ID } from './guest-code/index.ts'
import type { NativeHostMapping } from './host-mapping.ts'
import type { NativeUserfaultBitmap } from './userfault-bitmap.ts'
import { shapeExit } from './vcpu.ts'
import type { NativeVm } from './vm.ts'

/** The backend's own objects a run uses (the public contract of native.ts, typed as the native classes). */
export interface DemandPagingHost {
  backend: Backend
  ctx: NativeContext
}

export async function runNativeDemandPaging(host: DemandPagingHost, config: DemandPagingConfig): Promise<DemandPagingResult> {
  const { backend: kvm, ctx } = host
  const info = await kvm.info()
  const resolved = resolveDemandPagingConfig(config, info.pageSize)
  const unavailable = backingUnavailable(info, resolved.backing)
  if (unavailable !== undefined) throw new RangeError(unavailable)
  if (resolved.vcpus > MAX_VCPU_ID + 1) {
    throw new RangeError(`vcpus: ${resolved.vcpus}: the native boot slot has code areas for ${MAX_VCPU_ID + 1} vCPUs`)
  }
  if (resolved.kvmUserfault) {
    const refusal = await kvmUserfaultRefusal(kvm)
    if (refusal !== null) throw refusal
  }
  const plan = demandPagingPlan(resolved, info.pageSize)
  const { layout } = plan

  const vm = (await kvm.createVm()) as NativeVm
  const made: { close(): Promise<void> }[] = []
  try {
    const region = (await kvm.mmap({ size: layout.size, backing: resolved.backing })) as NativeHostMapping
    made.push(region)
    if (plan.prefault.length > 0) {
      // The alias only fills the page cache; unmapped again before the run, so that the vCPUs' MINOR
      // faults map pages no other mapping of this process holds (as the C reference's do).
      const alias = await region.alias()
      try {
        for (const r of plan.prefault) await alias.fill(r.gpa - layout.gpa, r.len, GUEST_DATA_PROTOTYPE_BYTE)
      } finally {
        await alias.close()
      }
    }
    let bitmap: NativeUserfaultBitmap | null = null
    if (resolved.kvmUserfault) {
      // enable_userfault(): every page starts as userfault.
      bitmap = (await kvm.createUserfaultBitmap(Number(layout.size / BigInt(info.pageSize)))) as NativeUserfaultBitmap
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
    const spec = await loadGuests(vm, plan, resolved, info.pageSize)
    const raw = await nativeAsync(() => ctx.addon.demandPagingRun(vm.handle, region.handle, bitmap?.handle ?? null, spec))
    if (raw.error !== null) throw new KvmError(raw.error.errno, raw.error.op)
    if (raw.timedOut) {
      throw new DemandPagingTimeout(resolved.timeoutMs, raw.vcpus.filter((v) => v.synced).length, resolved.vcpus)
    }
    const samples = await readSamples(region, plan, resolved.samplePages)
    return demandPagingResult(resolved, plan, measurement(raw), samples)
  } finally {
    await vm.close() // the memslots go first, then the memory behind them
    for (const obj of made.reverse()) await obj.close()
  }
}

/** Writes the boot slot (shared tables once, each vCPU's code area) and the spec with each vCPU's registers. */
async function loadGuests(vm: NativeVm, plan: DemandPagingPlan, config: ResolvedDemandPagingConfig,
  hostPageSize: number): Promise<RawDemandPagingSpec> {
  const boot = await vm.bootMemory()
  const vcpus: RawDemandPagingSpec['vcpus'] = []
  for (const args of plan.layout.vcpuArgs) {
    const compiled = compileGuestProgram(memstressGuestCode(args, config.write), { vcpuId: args.vcpuIdx })
    if (args.vcpuIdx === 0) await boot.write(compiled.writes[0].gpa, compiled.writes[0].bytes)
    await boot.write(compiled.writes[1].gpa, compiled.writes[1].bytes)
    vcpus.push({ id: args.vcpuIdx, regs: compiled.regs, sregs: compiled.sregs, cpu: config.pinning?.vcpus[args.vcpuIdx] ?? -1 })
  }
  return {
    regionGpa: plan.layout.gpa,
    hostPageSize,
    unitBytes: plan.unitBytes,
    guestPageSize: plan.layout.guestPageSize,
    syncPort: UCALL_SYNC,
    vcpus,
    mainCpu: config.pinning?.main ?? -1,
    uffdMode: plan.uffd?.mode ?? null,
    uffdRanges: plan.uffd?.descs.map((d) => ({ gpa: d.gpa, len: d.len })) ?? [],
    registerMode: BigInt(plan.uffd?.registerMode ?? 0),
    expectedIoctl: plan.uffd?.expectedIoctl ?? 0n,
    readersPerUffd: config.readersPerUffd,
    delayUs: config.uffdDelayUs,
    writeValue: config.write ? MEMSTRESS_WRITE_VALUE : null,
    timeoutMs: config.timeoutMs,
  }
}

/** `n` guest pages spread evenly over the region, first and last included, read after the run. */
async function readSamples(region: HostMapping, plan: DemandPagingPlan, n: number): Promise<DemandPagingSample[]> {
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

/** The addon's counters in the harness's words (harness/kvm-util/demand-paging.ts builds the result). */
function measurement(raw: RawDemandPagingOutcome): DemandPagingMeasurement {
  return {
    elapsedNs: raw.elapsedNs,
    vcpus: raw.vcpus.map((v) => ({
      elapsedNs: v.elapsedNs,
      exit: v.synced || v.exit === null ? null : shapeExit(v.exit),
      userfaultExits: v.userfaultExits,
    })),
    uffd: raw.uffd,
    kvmUserfault: {
      ...raw.kvmUserfault,
      violations: raw.kvmUserfault.violations.map((v) => ({ ...v, why: v.why as UserfaultExitViolation['why'] })),
    },
    pagesWithoutGuestWrite: raw.pagesWithoutWrite,
  }
}
