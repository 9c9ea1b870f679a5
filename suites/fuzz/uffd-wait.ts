// Watching a vCPU call (KVM_RUN, KVM_PRE_FAULT_MEMORY) that may block inside the kernel on the run's
// userfaultfd: either the call settles, or its fault shows up as a UFFD_EVENT_PAGEFAULT while the call
// stays pending, which is what "blocked on userfaultfd" looks like from outside. Every wait has a
// deadline; a call that does neither is reported as a hang, never waited on forever.

import type { UffdEvent } from '../../harness/backend.ts'
import type { FuzzReal } from './real.ts'

/** How long a vCPU call gets to settle or block, and a resolved one to settle. */
export const DEADLINE_MS = 5_000

export type Observed<T> =
  | { kind: 'settled'; value: T }
  | { kind: 'blocked'; events: UffdEvent[] }
  | { kind: 'hang' }

/** Polls until `call` settles (a rejection is rethrown), the uffd has events, or the deadline passes. */
export async function observe<T>(r: FuzzReal, call: Promise<T>, deadlineMs = DEADLINE_MS): Promise<Observed<T>> {
  type State = { done: false } | { done: true; ok: true; value: T } | { done: true; ok: false; error: unknown }
  const box: { state: State } = { state: { done: false } }
  call.then((value) => (box.state = { done: true, ok: true, value }), (error: unknown) => (box.state = { done: true, ok: false, error }))
  const end = performance.now() + deadlineMs
  for (let spins = 0; ; spins++) {
    const s = box.state
    if (s.done) {
      if (!s.ok) throw s.error
      return { kind: 'settled', value: s.value }
    }
    // Read only while the call is pending: a settled call cannot be blocked.
    const events = r.uffd === null ? [] : await r.uffd.readEvents(8)
    if (events.length > 0) return { kind: 'blocked', events }
    if (performance.now() > end) return { kind: 'hang' }
    // Yield to the event loop (the native vCPU thread reports through it); back off after a while.
    await new Promise((resolve) => (spins < 200 ? setImmediate(resolve) : setTimeout(resolve, 1)))
  }
}

/** Whether `p` is still pending after `ms`. */
export async function stillPending(p: Promise<unknown>, ms: number): Promise<boolean> {
  let pending = true
  p.then(() => (pending = false), () => (pending = false))
  await new Promise((resolve) => setTimeout(resolve, ms))
  return pending
}

export function describeEvents(events: UffdEvent[]): string {
  return events.map((e) => e.kind === 'pagefault'
    ? `UFFD_EVENT_PAGEFAULT address 0x${e.address.toString(16)} flags 0x${e.flags.toString(16)}`
    : `event 0x${e.event.toString(16)}`).join(', ')
}
