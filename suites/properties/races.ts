// Races of post-copy demand paging, explored with fast-check's scheduler (race-schedule.ts): two vCPUs
// touching overlapping pages of a userfaultfd-registered memslot, a reader resolving their faults
// (UFFDIO_COPY; on EEXIST, UFFDIO_WAKE, as the series' resolve_uffd_page_request() does), a background
// fetcher populating pages ahead of the vCPUs with UFFDIO_COPY_MODE_DONTWAKE, and under KVM Userfault the
// vCPUs' own exit handling (populate early with DONTWAKE, then clear the bit with release ordering) and a
// toggler turning KVM_MEM_USERFAULT off and on. Whatever the order the scheduler picks:
//   - no vCPU is left waiting on a page that was resolved (its run still pending a grace period after
//     the page's contents were in place and no fault is left unread);
//   - no KVM Userfault exit reports a page whose bit was cleared before that KVM_RUN began (the bits are
//     never set again, so such an exit read a stale bit);
//   - an exit names the page the vCPU touched (page-aligned gpa, size 4096, exactly the USERFAULT flag);
//   - every vCPU reaches each GUEST_SYNC, and every page it touched holds what the resolver copied.
// On the emulator the scheduler's order is the whole story: an operation runs to its first yield when
// its gate opens. On a real kernel it orders when the operations start.
//
// races.test.ts runs it on the backend under test; races.spec.ts shows it catches planted race bugs.

import fc from 'fast-check'
import type { Backend, Uffd, Vcpu, VcpuExit, Vm } from '../../harness/backend.ts'
import { KvmError } from '../../harness/errors.ts'
import type { GuestStep } from '../../harness/guest-program.ts'
import { describeExit, getUcall, guestSync } from '../../harness/kvm-util/ucall.ts'
import { GUEST_DATA_PROTOTYPE_BYTE } from '../../harness/kvm-util/userfaultfd-util.ts'
import { userfaultSlot, type UserfaultSlot } from '../../harness/kvm-util/userfault.ts'
import { expect } from 'vitest'
import { KVM_MEM_USERFAULT, KVM_MEMORY_EXIT_FLAG_USERFAULT } from '../../harness/uapi/series.ts'
import { UFFDIO_COPY_MODE_DONTWAKE, UFFDIO_REGISTER_MODE_MISSING } from '../../harness/uapi/userfaultfd.ts'
import { RaceSchedule } from './race-schedule.ts'
import { hex } from '../../harness/hex.ts'

const SLOT = 12
const GPA = 0xd000_0000n
const NPAGES = 6
const PAGE = 4096n
const VCPUS = 2
/** How long a vCPU may still wait after its page was resolved before it counts as left waiting. */
const GRACE_MS = 1000
const DRIVE_DEADLINE_MS = 20_000

export interface Plan {
  /** The pages each vCPU touches, in order (they overlap, so vCPUs fault on the same pages). */
  touches: number[][]
  /** The pages the background fetcher populates ahead of the vCPUs. */
  fetched: number[]
  /** Under KVM Userfault: how many times the toggler turns KVM_MEM_USERFAULT off and on again. */
  toggles: number
}

const pageArb = fc.integer({ min: 0, max: NPAGES - 1 })
export const planArb: fc.Arbitrary<Plan> = fc.record({
  touches: fc.array(fc.array(pageArb, { minLength: 1, maxLength: 4 }), { minLength: VCPUS, maxLength: VCPUS }),
  fetched: fc.array(pageArb, { maxLength: 3 }),
  toggles: fc.integer({ min: 0, max: 2 }),
})

/** What the actors share: the host's view of which pages are in place and which bits are clear. */
interface World {
  slot: UserfaultSlot
  uffd: Uffd
  kvmUserfault: boolean
  /** When each page's contents were put in place (UFFDIO_COPY succeeded, or found them there). */
  resolvedAt: Map<number, number>
  /** Bits cleared so far (never set again). */
  cleared: Set<number>
  /** The page each vCPU's run in flight touches, or null between runs. */
  touching: (number | null)[]
}

const prototype = new Uint8Array(Number(PAGE)).fill(GUEST_DATA_PROTOTYPE_BYTE)

/** UFFDIO_COPY of the prototype into `page`; EEXIST means it is there already. Returns whether it was. */
async function populate(w: World, page: number, mode: number): Promise<'copied' | 'EEXIST'> {
  try {
    await w.uffd.copy({ dst: w.slot.mem.addr + BigInt(page) * PAGE, data: prototype, mode })
    return 'copied'
  } catch (e) {
    if (KvmError.is(e) && e.code === 'EEXIST') return 'EEXIST'
    throw e
  } finally {
    if (!w.resolvedAt.has(page)) w.resolvedAt.set(page, performance.now())
  }
}

async function vcpuActor(w: World, index: number, vcpu: Vcpu, pages: number[], gate: (l: string) => Promise<void>): Promise<void> {
  for (const [k, page] of pages.entries()) {
    await gate(`KVM_RUN touching page ${page}`)
    for (;;) {
      const clearedBefore = new Set(w.cleared)
      w.touching[index] = page
      const exit: VcpuExit = await vcpu.run()
      w.touching[index] = null
      const u = getUcall(exit)
      if (u?.cmd === 'sync' && u.value === k) break
      const what = `vCPU ${index} touching page ${page} (GUEST_SYNC(${k}) next)`
      if (exit.kind !== 'memory_fault' || !w.kvmUserfault) expect.fail(`${what}: expected GUEST_SYNC(${k}), got ${describeExit(exit)}`)
      const gpa = w.slot.pageGpa(page)
      expect(exit, `${what}: the exit names the page touched`).toEqual({
        kind: 'memory_fault', errno: 'EFAULT', flags: KVM_MEMORY_EXIT_FLAG_USERFAULT, gpa, size: PAGE,
      })
      if (clearedBefore.has(page)) expect.fail(`${what}: a userfault exit for ${hex(gpa)}, whose bit was cleared before this KVM_RUN began`)
      // resolve_kvm_userfault(): the contents first (through the userfaultfd, DONTWAKE: nobody waits on
      // them yet), then the bit cleared with release ordering, then KVM_RUN again.
      await gate(`populate page ${page} after its exit`)
      await populate(w, page, UFFDIO_COPY_MODE_DONTWAKE)
      await gate(`clear bit ${page}`)
      await w.slot.bitmap.clear(page)
      w.cleared.add(page)
    }
  }
}

/** The userfaultfd reader: resolves every fault read, waking the faulting vCPU; watches for a vCPU left waiting. */
async function readerActor(w: World, vcpusDone: () => boolean, gate: (l: string) => Promise<void>): Promise<void> {
  while (!vcpusDone()) {
    // Reading changes nothing, so it is not a gate (a gate per empty poll would fill the report);
    // each resolution is.
    const events = await w.uffd.readEvents()
    if (events.length === 0) {
      const now = performance.now()
      w.touching.forEach((page, v) => {
        const at = page === null ? undefined : w.resolvedAt.get(page)
        if (at !== undefined && now - at > GRACE_MS) {
          expect.fail(`vCPU ${v} is still waiting on page ${page} ${Math.round(now - at)} ms after it was resolved, with no fault left to read`)
        }
      })
      await new Promise((resolve) => setTimeout(resolve, 1)) // the other actors and the vCPUs run meanwhile
      continue
    }
    for (const ev of events) {
      if (ev.kind !== 'pagefault') expect.fail(`unexpected userfaultfd event ${ev.event}`)
      const page = Number((ev.address - w.slot.mem.addr) / PAGE)
      if (page < 0 || page >= NPAGES) expect.fail(`a fault at ${hex(ev.address)}, outside the registered pages`)
      await gate(`resolve the fault on page ${page}`)
      // EEXIST: someone else put the page in place, with DONTWAKE; the faulting vCPU still needs waking.
      if ((await populate(w, page, 0)) === 'EEXIST') await w.uffd.wake({ start: w.slot.mem.addr + BigInt(page) * PAGE, len: PAGE })
    }
  }
}

/** The background fetcher: pages put in place ahead of the vCPUs, with DONTWAKE; their bits cleared after. */
async function fetcherActor(w: World, pages: number[], gate: (l: string) => Promise<void>): Promise<void> {
  for (const page of pages) {
    await gate(`fetch page ${page} ahead`)
    await populate(w, page, UFFDIO_COPY_MODE_DONTWAKE)
    if (!w.kvmUserfault) continue
    await gate(`clear bit ${page} after fetching it`)
    await w.slot.bitmap.clear(page)
    w.cleared.add(page)
  }
}

async function togglerActor(w: World, toggles: number, gate: (l: string) => Promise<void>): Promise<void> {
  for (let i = 0; i < toggles; i++) {
    await gate('turn KVM_MEM_USERFAULT off')
    await w.slot.set(0)
    await gate('turn KVM_MEM_USERFAULT on')
    await w.slot.set(KVM_MEM_USERFAULT)
  }
}

/** One run of the race: a fresh VM, the actors of `plan`, the order `s` picks. Throws on a violation. */
export async function raceOnce(kvm: Backend, s: fc.Scheduler, plan: Plan, kvmUserfault: boolean): Promise<void> {
  const vm: Vm = await kvm.createVm()
  let uffd: Uffd | undefined
  let slot: UserfaultSlot | undefined
  const runs: Promise<void>[] = []
  try {
    slot = await userfaultSlot(kvm, vm, { slot: SLOT, gpa: GPA, npages: NPAGES })
    uffd = await kvm.openUffd({ via: 'syscall' })
    await uffd.api()
    await uffd.register({ start: slot.mem.addr, len: BigInt(NPAGES) * PAGE }, UFFDIO_REGISTER_MODE_MISSING)
    if (kvmUserfault) await slot.bitmap.fill(true)
    await slot.set(kvmUserfault ? KVM_MEM_USERFAULT : 0)
    const w: World = { slot, uffd, kvmUserfault, resolvedAt: new Map(), cleared: new Set(), touching: plan.touches.map(() => null) }

    const race = new RaceSchedule(s)
    const vcpus: Vcpu[] = []
    for (const [i, pages] of plan.touches.entries()) {
      const vcpu = await vm.createVcpu(i)
      const steps: GuestStep[] = pages.flatMap((p, k) => [{ op: 'read', gva: w.slot.pageGpa(p) + BigInt(8 * i) }, guestSync(k)])
      await vcpu.loadProgram({ steps })
      vcpus.push(vcpu)
    }
    const vcpuRuns = plan.touches.map((pages, i) => race.spawn(`vCPU ${i}`, (gate) => vcpuActor(w, i, vcpus[i]!, pages, gate)))
    let vcpusFinished = false
    void Promise.allSettled(vcpuRuns).then(() => { vcpusFinished = true })
    const vcpusDone = () => vcpusFinished
    runs.push(
      ...vcpuRuns,
      race.spawn('reader', (gate) => readerActor(w, vcpusDone, gate)),
      race.spawn('fetcher', (gate) => fetcherActor(w, plan.fetched, gate)),
    )
    if (kvmUserfault) runs.push(race.spawn('toggler', (gate) => togglerActor(w, plan.toggles, gate)))
    await race.drive(runs, DRIVE_DEADLINE_MS)

    for (const page of new Set(plan.touches.flat())) {
      expect(await w.slot.mem.findMismatch(BigInt(page) * PAGE, PAGE, GUEST_DATA_PROTOTYPE_BYTE), `page ${page} holds what the resolver copied`).toBe(-1n)
    }
  } finally {
    // Closing the userfaultfd wakes any vCPU still blocked (a failed run), so the VM can go.
    await uffd?.close().catch(() => undefined)
    await Promise.race([Promise.allSettled(runs), new Promise((resolve) => setTimeout(resolve, 5_000))])
    await vm.close()
    await slot?.bitmap.close()
    await slot?.mem.close()
  }
}

/** The race property over `kvm`: any plan, any order fast-check's scheduler picks. */
export function raceProperty(kvm: Backend, kvmUserfault: boolean): fc.IAsyncPropertyWithHooks<[fc.Scheduler, Plan]> {
  return fc.asyncProperty(fc.scheduler(), planArb, (s, plan) => raceOnce(kvm, s, plan, kvmUserfault))
}
