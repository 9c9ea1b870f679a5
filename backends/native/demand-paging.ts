// Backend.runDemandPaging on the native backend: JavaScript builds the VM the way memstress does and
// collects the result; the run itself (vCPU threads, userfaultfd readers, the -k resolver) is the
// addon's DemandPagingRun (src/demand-paging-run.h), so nothing per page crosses into JavaScript.
//
// Built here, on the main thread: the VM, the boot memslot with each vCPU's memstress program (compiled
// by guest-code/), the region's host memory as memslot 1 (KVM_MEM_USERFAULT plus a full bitmap with -k),
// and for MINOR the page cache filled with 0xAB through an alias mapping (the series' prefault fix:
// every vCPU's slice). Everything is closed again before the promise settles, whatever happened.
// (Upstream keeps the alias mapped for the VM's lifetime; nothing reads it after the prefault.)

import type { Backend } from '../../harness/backend.ts'
import type {
  DemandPagingConfig, DemandPagingResult, ResolvedDemandPagingConfig,
  UserfaultExitViolation,
} from '../../harness/demand-paging-types.ts'
import { KvmError } from '../../harness/errors.ts'
import {
  createDemandPagingVm, DemandPagingTimeout, demandPagingResult, readSamples,
  type DemandPagingMeasurement,
  resolveDemandPagingOn, type DemandPagingPlan,
} from '../../harness/kvm-util/demand-paging.ts'
import { MEMSTRESS_WRITE_VALUE, memstressGuestCode } from '../../harness/kvm-util/memstress.ts'
import { UCALL_SYNC } from '../../harness/kvm-util/ucall.ts'
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
  const resolved = resolveDemandPagingOn(info, config)
  if (resolved.vcpus > MAX_VCPU_ID + 1) {
    throw new RangeError(`vcpus: ${resolved.vcpus}: the native boot slot has code areas for ${MAX_VCPU_ID + 1} vCPUs`)
  }
  const made = await createDemandPagingVm(kvm, resolved, info.pageSize)
  const { plan } = made
  // The native backend's own objects behind the contract's handles: the run takes their addon handles.
  const vm = made.vm as NativeVm
  const region = made.region as NativeHostMapping
  const bitmap = made.bitmap as NativeUserfaultBitmap | null
  try {
    const spec = await loadGuests(vm, plan, resolved, info.pageSize)
    const raw = await nativeAsync(() => ctx.addon.demandPagingRun(vm.handle, region.handle, bitmap?.handle ?? null, spec))
    if (raw.error !== null) throw new KvmError(raw.error.errno, raw.error.op)
    if (raw.timedOut) {
      throw new DemandPagingTimeout(resolved.timeoutMs, raw.vcpus.filter((v) => v.synced).length, resolved.vcpus)
    }
    const samples = await readSamples(region, plan, resolved.samplePages)
    return demandPagingResult(resolved, plan, measurement(raw), samples)
  } finally {
    await made.close()
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
