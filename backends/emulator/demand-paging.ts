// Backend.runDemandPaging on the emulator: demand_paging_test (shared/reference/upstream-selftests.md §A,
// with the KVM Userfault series' -k of §A.3) simulated inside the backend, through the emulator's own
// rules wherever they exist.
//
// Built through the Backend contract, as the native backend builds it: the VM, the region's host memory
// (memslot 1 over it, KVM_MEM_USERFAULT plus a bitmap with every bit set under -k), one vCPU per
// memstress slice with memstress's guest program loaded (KVM_CREATE_VCPU's and the program checks' rules),
// and for MINOR the page cache filled with 0xAB through an alias mapping (the series' prefault fix).
//
// The run itself is one synchronous simulation, with an event-loop yield every ~20 ms (and the deadline
// checked every round), so that nothing per page allocates a promise:
//   - each vCPU executes its program's touch_pages step page by page: every access goes through the
//     emulator's stage-2 fault path (GuestMemory -> page-fault.ts: memslot lookup, KVM Userfault's bitmap
//     read by userfault.ts' checkUserfault(), stage-2 mapping at the level mapping-level.ts allows), then
//     reaches its host page;
//   - before KVM's hva_to_pfn() reaches a host page that the region's page tables do not map yet (the
//     model keeps those page tables per unit: mapped by an ordinary fault, a resolution or -k's memcpy), the
//     userfaultfd model steps in: a registered range turns the fault into a UFFD_EVENT_PAGEFAULT queued
//     on that range's userfaultfd (one per vCPU, or one for all with -a / -o) and the vCPU blocks;
//   - vCPUs are interleaved round-robin: each unblocked vCPU runs a chunk of pages (or until it blocks),
//     then each userfaultfd's queue is drained by its readers. Partitioned (no -o), no other vCPU can
//     fault on a blocked vCPU's unit, so its message is handled at once instead, with the same
//     statistics and without a round per page. The readers (-r: messages handed out in turn, as
//     EPOLLEXCLUSIVE wakes one reader per event) resolve: MISSING -> UFFDIO_COPY of the 0xAB unit, MINOR ->
//     UFFDIO_CONTINUE over the page cache; a unit already mapped fails with EEXIST and is followed by
//     UFFDIO_WAKE (the series' resolve_uffd_page_request()). With -o every vCPU faults on the same page in
//     the same round, so all but the first resolution are EEXIST, as in the real flow;
//   - under -k, an access to a page whose bit is set and that stage-2 does not map is a
//     KVM_EXIT_MEMORY_FAULT (the real rule: flags USERFAULT, gpa gfn << 12, size 4096), checked against
//     the series' promise and resolved as resolve_kvm_userfault() does (memcpy of the prototype, or an
//     early UFFDIO_COPY/CONTINUE with DONTWAKE when -u is given), the bit cleared, and the vCPU re-entered.
//
// -d (the readers' usleep before each resolution) is accounted, not slept: each drain adds the largest
// delay any one reader of it accumulated (readers run in parallel) to a simulated clock,
// and every elapsed time reported (per vCPU and overall) is the wall time plus that clock at that point.
// -c (pinning) is accepted and has no effect: the simulation runs on the one JavaScript thread.

import type { Backend, HostMapping, Vm, VcpuExit } from '../../harness/backend.ts'
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
import { memstressGuestCode } from '../../harness/kvm-util/memstress.ts'
import { GUEST_DATA_PROTOTYPE_BYTE } from '../../harness/kvm-util/userfaultfd-util.ts'
import { KVM_MEMORY_EXIT_FLAG_USERFAULT } from '../../harness/uapi/series.ts'
import type { AddressSpace, Vma } from './address-space.ts'
import { isFault } from './address-space.ts'
import { GuestMemory } from './guest-memory.ts'
import type { MemoryExit } from './page-fault.ts'
import { PAGE_SHIFT, PAGE_SIZE, pageIndex } from './page-store.ts'
import { checkUserfault, userfaultExitFlags } from './userfault.ts'
import type { VmState } from './vm.ts'

/** What the backend lends a run: its contract, its host address space, and the model behind a VM handle. */
export interface EmulatorDemandPagingHost {
  kvm: Backend
  memory: AddressSpace
  vmState(vm: Vm): VmState
}

/** Pages one vCPU runs before the next one gets its turn (when it does not block first). */
const CHUNK_PAGES = 1024
/** How long the simulation may keep the event loop before it yields (ms). */
const YIELD_EVERY_MS = 20
/** How many violations the result lists (all are counted), as native. */
const MAX_VIOLATIONS = 16
const SHIFT = BigInt(PAGE_SHIFT)
const yieldToHost = () => new Promise<void>((resolve) => setImmediate(resolve))

export async function runEmulatorDemandPaging(
  host: EmulatorDemandPagingHost, config: DemandPagingConfig,
): Promise<DemandPagingResult> {
  const { kvm } = host
  const info = await kvm.info()
  const resolved = resolveDemandPagingOn(info, config)
  const { plan, vm, region, bitmap, close } = await createDemandPagingVm(kvm, resolved, info.pageSize)
  const { layout } = plan
  try {
    // memstress_create_vm()'s vCPUs, each with its program (the pass the simulation executes).
    const passes: Pass[] = []
    for (const args of layout.vcpuArgs) {
      const vcpu = await vm.createVcpu(args.vcpuIdx)
      const program = memstressGuestCode(args, resolved.write)
      await vcpu.loadProgram(program)
      const touch = program.steps[0]
      if (touch?.op !== 'touch_pages') throw new Error('memstressGuestCode(): the first step is not touch_pages')
      passes.push({ gpa: BigInt(touch.gva), pages: touch.pages, stride: touch.stride, write: touch.write, value: BigInt(touch.value) })
    }
    const sim = new Simulation(host, host.vmState(vm), region, bitmap?.addr ?? null, plan, resolved, passes)
    const run = await sim.run()
    const samples = await readSamples(region, plan, resolved.samplePages)
    return demandPagingResult(resolved, plan, measurement(plan, run, sim.pagesWithoutGuestWrite()), samples)
  } finally {
    await close()
  }
}

/** One vCPU's memstress pass, as its program's touch_pages step says. */
interface Pass {
  gpa: bigint
  pages: number
  stride: number
  write: boolean
  value: bigint
}

interface VcpuSim {
  index: number
  pass: Pass
  /** The next page of the pass. */
  next: number
  /** Waiting for a userfaultfd resolution (its fault is queued). */
  blocked: boolean
  done: boolean
  elapsedNs: bigint
  userfaultExits: number
  exit: VcpuExit | null
}

/** One userfaultfd: its range in units of the region and the messages queued on it. */
interface UffdSim {
  firstUnit: number
  endUnit: number
  /** Queued UFFD_EVENT_PAGEFAULTs: [vCPU index, unit] pairs. */
  queue: number[]
  nextReader: number
}

interface RunOutcome {
  elapsedNs: bigint
  vcpus: VcpuSim[]
  uffd: { faults: number; resolved: number; eexist: number; wakes: number; once: number; more: number; never: number }
  kvmUserfault: {
    exits: number; pagesWithExit: number; pagesWithMoreExits: number
    violations: UserfaultExitViolation[]; violationCount: number
  }
}

class Simulation {
  private readonly memory: GuestMemory
  private readonly regionAddr: bigint
  /** The region's mapping (the object behind it holds the pages UFFDIO_COPY fills and CONTINUE maps). */
  private readonly vma: Vma | undefined
  /** The object's page index of the region's first page. */
  private readonly firstObjectPage: number
  private readonly regionGpa: bigint
  private readonly regionPages: number
  private readonly baseGfn: number
  private readonly unitBytes: number
  private readonly unitPages: number
  private readonly units: number
  /** The region's host page tables: whether each unit is mapped in the region's mapping. */
  private readonly present: Uint8Array
  /** Successful UFFDIO_COPY/CONTINUE per unit, saturating at 2. */
  private readonly resolvedPerUnit: Uint8Array
  /** Userfault exits per guest page, saturating at 2. */
  private readonly exitsPerPage: Uint8Array
  private readonly uffds: UffdSim[]
  private readonly unitsPerUffd: number
  private readonly vcpus: VcpuSim[]
  private readonly valueBytes: Uint8Array[]
  private faults = 0
  private resolved = 0
  private eexist = 0
  private wakes = 0
  private exits = 0
  private readonly violations: UserfaultExitViolation[] = []
  private violationCount = 0
  /** The simulated clock of -d: delays accounted, not slept. */
  private accountedNs = 0
  private startNs = 0n

  constructor(
    private readonly host: EmulatorDemandPagingHost,
    private readonly vm: VmState,
    region: HostMapping,
    private readonly bitmapAddr: bigint | null,
    plan: DemandPagingPlan,
    private readonly config: ResolvedDemandPagingConfig,
    passes: Pass[],
  ) {
    const { layout } = plan
    this.memory = new GuestMemory(vm, host.memory)
    this.regionAddr = region.addr
    this.vma = host.memory.find(region.addr)
    this.firstObjectPage = this.vma === undefined ? 0 : pageIndex(this.vma.offset + (region.addr - this.vma.start))
    this.regionGpa = layout.gpa
    this.regionPages = Number(layout.size >> BigInt(PAGE_SHIFT))
    this.baseGfn = Number(layout.gpa >> BigInt(PAGE_SHIFT))
    this.unitBytes = plan.unitBytes
    this.unitPages = plan.unitBytes / PAGE_SIZE
    this.units = Number(layout.size / BigInt(plan.unitBytes))
    this.present = new Uint8Array(this.units)
    this.resolvedPerUnit = new Uint8Array(this.units)
    this.exitsPerPage = new Uint8Array(this.regionPages)
    this.uffds = (plan.uffd?.descs ?? []).map((d) => ({
      firstUnit: Number((d.gpa - layout.gpa) / BigInt(plan.unitBytes)),
      endUnit: Number((d.gpa - layout.gpa + d.len) / BigInt(plan.unitBytes)),
      queue: [],
      nextReader: 0,
    }))
    this.unitsPerUffd = this.uffds.length === 0 ? 0 : this.uffds[0]!.endUnit - this.uffds[0]!.firstUnit
    this.vcpus = passes.map((pass, index) => ({
      index, pass, next: 0, blocked: false, done: false, elapsedNs: 0n, userfaultExits: 0, exit: null,
    }))
    this.valueBytes = passes.map((p) => le64(p.value))
  }

  private now(): bigint {
    return process.hrtime.bigint() - this.startNs + BigInt(this.accountedNs)
  }

  async run(): Promise<RunOutcome> {
    const deadline = performance.now() + this.config.timeoutMs
    let lastYield = performance.now()
    this.startNs = process.hrtime.bigint()
    let live = this.vcpus.length
    while (live > 0) {
      for (const v of this.vcpus) {
        if (v.done || v.blocked) continue
        this.advance(v, CHUNK_PAGES)
        if (v.done) live--
      }
      if (this.uffds.length > 0) this.drain()
      const t = performance.now()
      if (t >= deadline) {
        throw new DemandPagingTimeout(this.config.timeoutMs, this.vcpus.filter((v) => v.done && v.exit === null).length, this.vcpus.length)
      }
      if (t - lastYield >= YIELD_EVERY_MS) {
        await yieldToHost()
        lastYield = performance.now()
      }
    }
    const elapsedNs = this.vcpus.reduce((max, v) => (v.elapsedNs > max ? v.elapsedNs : max), 0n)
    let once = 0
    let more = 0
    let never = 0
    for (const n of this.resolvedPerUnit) {
      if (n === 0) never++
      else if (n === 1) once++
      else more++
    }
    let pagesWithExit = 0
    let pagesWithMoreExits = 0
    for (const n of this.exitsPerPage) {
      if (n >= 1) pagesWithExit++
      if (n >= 2) pagesWithMoreExits++
    }
    return {
      elapsedNs: elapsedNs > 0n ? elapsedNs : 1n,
      vcpus: this.vcpus,
      uffd: { faults: this.faults, resolved: this.resolved, eexist: this.eexist, wakes: this.wakes, once, more, never },
      kvmUserfault: {
        exits: this.exits, pagesWithExit, pagesWithMoreExits, violations: this.violations, violationCount: this.violationCount,
      },
    }
  }

  /** The userfaultfd registered over `unit`, if any. */
  private uffdOf(unit: number): UffdSim | undefined {
    return this.unitsPerUffd === 0 ? undefined : this.uffds[Math.floor(unit / this.unitsPerUffd)]
  }

  /** Runs vCPU `v` for up to `budget` pages, until it blocks on a userfaultfd, or to the end of its pass. */
  private advance(v: VcpuSim, budget: number): void {
    const { pass } = v
    const stride = BigInt(pass.stride)
    const value = this.valueBytes[v.index]!
    const slot = this.bitmapAddr !== null ? this.vm.memslots.find(0, this.baseGfn) : undefined
    const readUser = (a: bigint, l: number) => this.host.memory.read(a, l)
    const warn = (w: string) => this.vm.warn(w)
    const stage2 = this.vm.stage2
    for (let n = 0; n < budget && v.next < pass.pages; ) {
      const gpa = pass.gpa + BigInt(v.next) * stride
      const gfn = Number(gpa >> SHIFT)
      const page = gfn - this.baseGfn
      if (page >= 0 && page < this.regionPages && stage2.level(gfn) === null) {
        // KVM's fault path on an unmapped gfn: KVM Userfault's bit first (rule 8), before any host page.
        if (slot !== undefined) {
          const uf = checkUserfault(this.vm.userfault, slot, gfn, readUser, warn)
          if (uf === 'efault') throw new KvmError('EFAULT', 'KVM_RUN', 'the KVM Userfault bitmap could not be read')
          if (uf === 'exit') {
            const exit: VcpuExit = {
              kind: 'memory_fault', errno: 'EFAULT', flags: userfaultExitFlags(this.vm.isPrivate(gfn)),
              gpa: BigInt(gfn) << BigInt(PAGE_SHIFT), size: BigInt(PAGE_SIZE),
            }
            v.userfaultExits++
            if (!this.resolveUserfault(v, exit)) {
              this.finish(v, exit)
              return
            }
            continue // re-enter KVM_RUN: the same access again
          }
        }
        // hva_to_pfn(): the host page is not mapped in the region yet.
        const unit = Math.floor(page / this.unitPages)
        if (this.present[unit] === 0) {
          const uffd = this.uffdOf(unit)
          if (uffd !== undefined && this.faultsToUffd(unit)) {
            // handle_userfault(): the message is queued and the faulting thread sleeps until woken.
            uffd.queue.push(v.index, unit)
            v.blocked = true
            // Partitioned, no other vCPU can fault on this unit, so its reader answers at once (the same
            // statistics as a drain after the round, without a round per page); with -o the other vCPUs
            // get their turn first, so that they fault on the same pages as in the real flow.
            if (!this.config.overlap) {
              this.drainOne(uffd)
              continue
            }
            return
          }
          this.present[unit] = 1 // an ordinary host fault (zero page or the page cache)
        }
      }
      const r = pass.write ? this.memory.write(gpa, value) : readExit(this.memory.read(gpa, 8))
      if (r !== undefined) {
        if (r.kind === 'retry') continue
        if (r.kind === 'efault') throw new KvmError('EFAULT', 'KVM_RUN')
        this.finish(v, r.kind === 'mmio'
          ? { kind: 'mmio', physAddr: gpa, len: 8, isWrite: pass.write, data: pass.write ? value.slice() : new Uint8Array(8) }
          : { kind: 'memory_fault', errno: 'EFAULT', flags: r.flags, gpa: r.gpa, size: BigInt(PAGE_SIZE) })
        return
      }
      v.next++
      n++
    }
    // GUEST_SYNC(1) after the last page: the vCPU's pass is complete.
    if (v.next >= pass.pages) this.finish(v, null)
  }

  /** Whether a host fault on `unit` is one its registration reports (MINOR: only with the page in the page cache). */
  private faultsToUffd(unit: number): boolean {
    if (this.config.uffdMode !== 'MINOR') return true
    return this.pageCacheHas(unit)
  }

  private pageCacheHas(unit: number): boolean {
    const { vma } = this
    if (vma === undefined) return false
    const first = this.firstObjectPage + unit * this.unitPages
    for (let i = 0; i < this.unitPages; i++) if (!vma.object.pages.hasPage(first + i)) return false
    return true
  }

  private finish(v: VcpuSim, exit: VcpuExit | null): void {
    v.done = true
    v.exit = exit
    v.elapsedNs = this.now()
  }

  /** Every reader of every userfaultfd handles what is queued; the faulting vCPUs are woken. */
  private drain(): void {
    let roundMax = 0
    for (const uffd of this.uffds) {
      if (uffd.queue.length === 0) continue
      const busiest = this.handle(uffd)
      if (busiest > roundMax) roundMax = busiest
    }
    this.accountedNs += roundMax
  }

  /** One userfaultfd's readers handle its queue at once (a partitioned run's fault). */
  private drainOne(uffd: UffdSim): void {
    this.accountedNs += this.handle(uffd)
  }

  /**
   * The readers of `uffd` handle its queued messages: each resolved (EEXIST tolerated, then
   * UFFDIO_WAKE) and its vCPU woken. Returns the accounted -d delay of the busiest reader (ns).
   */
  private handle(uffd: UffdSim): number {
    const q = uffd.queue
    const msgs = q.length >> 1
    for (let i = 0; i < q.length; i += 2) {
      this.faults++
      this.resolve(q[i + 1]!, true)
      this.vcpus[q[i]!]!.blocked = false
    }
    q.length = 0
    // Messages go to the readers in turn (EPOLLEXCLUSIVE wakes one per event): the busiest of them
    // handled ceil(msgs / readers), each after its usleep(delay).
    const readers = this.config.readersPerUffd
    uffd.nextReader = (uffd.nextReader + msgs) % readers
    return Math.ceil(msgs / readers) * this.config.uffdDelayUs * 1000
  }

  /**
   * UFFDIO_COPY (MISSING: the 0xAB unit copied in) or UFFDIO_CONTINUE (MINOR: the page cache's unit
   * mapped) over `unit`; EEXIST when the unit is already mapped, then UFFDIO_WAKE if `wake` (a real
   * message) as the series' resolve_uffd_page_request(). DONTWAKE (-k) needs nothing more here.
   */
  private resolve(unit: number, wake: boolean): void {
    if (this.present[unit] !== 0) {
      this.eexist++
      if (wake) this.wakes++
      return
    }
    if (this.config.uffdMode === 'MINOR') {
      // mcopy_atomic_install_pte() of the page cache's page: none there -> EFAULT.
      if (!this.pageCacheHas(unit)) throw new KvmError('EFAULT', 'UFFDIO_CONTINUE')
    } else {
      // mfill_atomic_pte_copy(): a new page of the object behind the mapping gets the prototype, and
      // its PTE is installed (below); no access goes through the process's mapping.
      const { vma } = this
      if (vma === undefined) throw new KvmError('EFAULT', 'UFFDIO_COPY')
      vma.object.pages.fillPages(this.firstObjectPage + unit * this.unitPages, this.unitPages, GUEST_DATA_PROTOTYPE_BYTE)
    }
    this.present[unit] = 1
    this.resolved++
    if (this.resolvedPerUnit[unit]! < 2) this.resolvedPerUnit[unit]!++
  }

  /** resolve_kvm_userfault() of the series (§A.3), after the exit was checked; false stops the vCPU. */
  private resolveUserfault(v: VcpuSim, exit: Extract<VcpuExit, { kind: 'memory_fault' }>): boolean {
    this.exits++
    const { flags, gpa, size } = exit
    const violation = (why: UserfaultExitViolation['why']) => {
      this.violationCount++
      if (this.violations.length < MAX_VIOLATIONS) this.violations.push({ vcpu: v.index, gpa, size, flags, why })
    }
    // The selftest asserts flags == KVM_MEMORY_EXIT_FLAG_USERFAULT exactly: PRIVATE must not be set.
    if (flags !== KVM_MEMORY_EXIT_FLAG_USERFAULT) {
      violation('flags')
      return false
    }
    if (gpa < this.regionGpa || gpa - this.regionGpa >= BigInt(this.regionPages) * BigInt(PAGE_SIZE)) {
      violation('outside the region')
      return false
    }
    if (gpa % BigInt(PAGE_SIZE) !== 0n) violation('gpa not page aligned')
    if (size !== BigInt(PAGE_SIZE)) violation('size')
    const n = Number((gpa - this.regionGpa) >> BigInt(PAGE_SHIFT))
    if (this.exitsPerPage[n]! < 2) this.exitsPerPage[n]!++
    const unit = Math.floor(n / this.unitPages)
    const hva = this.regionAddr + (BigInt(n) << BigInt(PAGE_SHIFT))
    if (this.uffds.length > 0) {
      // Ahead of the fault, through the userfaultfd covering the page, with DONTWAKE: nobody waits yet.
      if (this.uffdOf(unit) !== undefined) this.resolve(unit, false)
    } else {
      // memcpy(prototype -> hva): a normal host fault maps the unit, then the copy.
      const fault = this.host.memory.fill(hva, BigInt(Math.min(PAGE_SIZE, this.unitBytes)), GUEST_DATA_PROTOTYPE_BYTE)
      if (fault !== undefined) throw new KvmError('EFAULT', 'memcpy')
      this.present[unit] = 1
    }
    // atomic_fetch_and(~bit, memory_order_release) on the user's bitmap word (one thread: release holds).
    const byteAddr = this.bitmapAddr! + BigInt(n >> 3)
    const old = this.host.memory.read(byteAddr, 1)
    if (isFault(old)) throw new KvmError('EFAULT', 'userfault bitmap')
    this.host.memory.write(byteAddr, Uint8Array.of(old[0]! & ~(1 << (n & 7))))
    return true
  }

  /** Guest pages whose first u64 is not the guest's value after a write pass; null after a read pass. */
  pagesWithoutGuestWrite(): number | null {
    if (!this.config.write) return null
    const expected = this.valueBytes[0]!
    let missing = 0
    for (let p = 0; p < this.regionPages; p++) {
      const bytes = this.host.memory.read(this.regionAddr + (BigInt(p) << BigInt(PAGE_SHIFT)), 8)
      if (isFault(bytes) || bytes.some((b, i) => b !== expected[i])) missing++
    }
    return missing
  }
}

function readExit(r: Uint8Array | MemoryExit): MemoryExit | undefined {
  return r instanceof Uint8Array ? undefined : r
}

function le64(value: bigint): Uint8Array {
  const bytes = new Uint8Array(8)
  new DataView(bytes.buffer).setBigUint64(0, BigInt.asUintN(64, value), true)
  return bytes
}

/** The simulation's counters in the harness's words (harness/kvm-util/demand-paging.ts builds the result). */
function measurement(plan: DemandPagingPlan, run: RunOutcome, pagesWithoutGuestWrite: number | null): DemandPagingMeasurement {
  const u = run.uffd
  return {
    elapsedNs: run.elapsedNs,
    vcpus: run.vcpus.map((v) => ({ elapsedNs: v.elapsedNs, exit: v.exit, userfaultExits: v.userfaultExits })),
    uffd: {
      uffds: plan.uffd?.descs.length ?? 0, units: Number(plan.layout.size / BigInt(plan.unitBytes)),
      faults: u.faults, resolved: u.resolved, eexist: u.eexist, wakes: u.wakes,
      unitsOnce: u.once, unitsMore: u.more, unitsNever: u.never,
    },
    kvmUserfault: run.kvmUserfault,
    pagesWithoutGuestWrite,
  }
}
