// One vCPU call (a guest access, KVM_PRE_FAULT_MEMORY) that reaches a page of slot id `id`'s host memory
// through KVM's fault path: whether it blocks on the userfaultfd is predicted by host-model.ts. A call
// predicted to go through must settle without an event; a call predicted to block must stay pending with
// exactly one UFFD_EVENT_PAGEFAULT for that page (its address, flags WRITE/MINOR as the access was), and
// is then released as the command says:
// - 'resolve': UFFDIO_COPY of a page whose u32 is `fill` (MISSING) or UFFDIO_CONTINUE (MINOR), as
//   demand_paging_test's handler does; both wake the waiter.
// - 'unregister': UFFDIO_UNREGISTER of the slot's range. It wakes a MISSING waiter; a MINOR waiter must
//   still be blocked afterwards (userfaultfd_unregister() wakes only userfaultfd_missing() VMAs), and is
//   woken with UFFDIO_WAKE. Either way the retried fault is served without the userfaultfd.
// - 'close': close() of the userfaultfd; userfaultfd_release() wakes every waiter.
// Then the call must settle, and no further event may be pending.

import { accessed, blockFlags, faultAround, hostOutcomes, pageAddr } from './host-model.ts'
import { hex, PAGE, SLOT_PAGES, type FuzzModel, type SlotId } from './model.ts'
import { settles, type FuzzReal } from './real.ts'
import { DEADLINE_MS, describeEvents, observe, stillPending } from './uffd-wait.ts'

export type Release = 'resolve' | 'unregister' | 'close'

/** How long a MINOR waiter must stay blocked after UFFDIO_UNREGISTER to count as not woken. */
const STILL_BLOCKED_MS = 20

export interface HostAccess {
  id: SlotId
  page: number
  write: boolean
  /** What the access stores (a guest write's u32), if anything. */
  value?: number
  release: Release
  /** UFFDIO_COPY's u32 when a MISSING block is resolved. */
  fill: number
  /** The command, for messages. */
  label: string
  /**
   * Whether the call may reach the host at all: false where the model predicts it stops before (a KVM
   * Userfault exit), so any block is a disagreement. What it settled with says whether it did (`reached`).
   */
  mayBlock: boolean
}

/** A page whose first u32 is `value`, the rest zero: what UFFDIO_COPY installs. */
export function pageWith(value: number): Uint8Array {
  const data = new Uint8Array(Number(PAGE))
  new DataView(data.buffer).setUint32(0, value >>> 0, true)
  return data
}

/** Runs `start` (the call), checks the block as predicted, releases it, and returns what it settled with. */
export async function hostAccess<T>(m: FuzzModel, r: FuzzReal, a: HostAccess, start: () => Promise<T>,
  describe: (v: T) => string, reached: (v: T) => boolean): Promise<T> {
  const outcomes = a.mayBlock ? hostOutcomes(m.host, a.id, a.page) : new Set(['none'])
  const block = outcomes.has('missing') ? 'missing' : outcomes.has('minor') ? 'minor' : undefined
  const addr = pageAddr(r.host.get(a.id)!.mem.addr, a.page)
  const where = `slot ${a.id} page ${a.page} (hva ${hex(addr)})`
  if (a.mayBlock) faultAround(m.host, a.id, a.page, a.write)
  const call = r.track(start())
  const seen = await observe(r, call)
  if (seen.kind === 'hang') throw new Error(`${a.label}: hang: the vCPU call neither returned nor blocked on the userfaultfd within ${DEADLINE_MS} ms`)
  if (seen.kind === 'settled') {
    if (!reached(seen.value)) return seen.value
    if (!outcomes.has('none')) {
      throw new Error(`${a.label}: the model predicts a block on the userfaultfd (a ${block} fault on ${where}), the backend gave ${describe(seen.value)}`)
    }
    accessed(m.host, a.id, a.page, a.value)
    return seen.value
  }
  const got = describeEvents(seen.events)
  if (block === undefined) throw new Error(`${a.label}: the model predicts no block on the userfaultfd, the backend blocked: ${got}`)
  const flags = blockFlags(block, a.write)
  const e = seen.events[0]!
  if (seen.events.length !== 1 || e.kind !== 'pagefault' || e.address !== addr || e.flags !== flags) {
    throw new Error(`${a.label}: the model predicts one UFFD_EVENT_PAGEFAULT address ${hex(addr)} flags 0x${flags.toString(16)} (a ${block} ${a.write ? 'write' : 'read'} fault), the backend gave ${got}`)
  }
  await release(m, r, a, block, addr, call)
  if (!(await settles(call, DEADLINE_MS))) throw new Error(`${a.label}: hang: still blocked ${DEADLINE_MS} ms after ${releaseName(a.release, block)}`)
  const value = await call
  const stray = r.uffd === null ? [] : await r.uffd.readEvents(8)
  if (stray.length > 0) throw new Error(`${a.label}: after ${releaseName(a.release, block)}, more events: ${describeEvents(stray)}`)
  // Released without mapping the page (unregister, close): the retried fault is an ordinary one.
  if (a.release !== 'resolve') faultAround(m.host, a.id, a.page, a.write)
  accessed(m.host, a.id, a.page, a.value)
  return value
}

function releaseName(release: Release, block: 'missing' | 'minor'): string {
  if (release === 'resolve') return block === 'missing' ? 'UFFDIO_COPY' : 'UFFDIO_CONTINUE'
  return release === 'unregister' ? 'UFFDIO_UNREGISTER' : 'close() of the userfaultfd'
}

/** A releasing call the model expects to succeed; a refusal is reported as the disagreement it is. */
async function must(a: HostAccess, what: string, call: Promise<unknown>): Promise<void> {
  try {
    await call
  } catch (e) {
    throw new Error(`${a.label}: the model predicts ${what} succeeds on the blocked page, the backend gave ${e instanceof Error ? e.message : String(e)}`)
  }
}

async function release(m: FuzzModel, r: FuzzReal, a: HostAccess, block: 'missing' | 'minor', addr: bigint, call: Promise<unknown>): Promise<void> {
  const uffd = r.uffd!
  const p = m.host.pages.get(a.id)![a.page]!
  const range = { start: r.host.get(a.id)!.mem.addr, len: BigInt(SLOT_PAGES) * PAGE }
  if (a.release === 'resolve') {
    if (block === 'missing') {
      await must(a, 'UFFDIO_COPY', uffd.copy({ dst: addr, data: pageWith(a.fill) }))
      p.value = a.fill
    } else {
      await must(a, 'UFFDIO_CONTINUE', uffd.continue({ start: addr, len: PAGE }))
    }
    p.cache = true
    p.pte = 'yes'
  } else if (a.release === 'unregister') {
    await must(a, 'UFFDIO_UNREGISTER', uffd.unregister(range))
    m.host.uffd.modes.delete(a.id)
    if (block === 'minor') {
      if (!(await stillPending(call, STILL_BLOCKED_MS))) {
        throw new Error(`${a.label}: the model predicts UFFDIO_UNREGISTER leaves a MINOR waiter blocked (userfaultfd_unregister() wakes only MISSING ranges), the backend woke it`)
      }
      await must(a, 'UFFDIO_WAKE', uffd.wake({ start: addr, len: PAGE }))
    }
  } else {
    r.uffd = null
    m.host.uffd = { open: false, modes: new Map() }
    await uffd.close()
  }
}
