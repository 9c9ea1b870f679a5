// Running concurrent actors under fast-check's scheduler, for the race properties (races.test.ts).
//
// Each actor is an async function that passes a gate before each operation it makes on the backend
// (a vCPU entering KVM_RUN, a userfaultfd read or resolution, a bit cleared, a flag toggled). A gate is a
// task of fast-check's scheduler, so the scheduler decides which actor's next operation starts next, and
// a failing order is shrunk and replayed like any counterexample. What happens between gates is the
// backend's own: on the emulator a vCPU's run proceeds in event-loop turns and a vCPU blocked on a
// userfaultfd stays blocked until a resolution wakes it; on a real kernel the vCPU threads run as the
// host schedules them, so the scheduler orders the starts of operations and no more.
//
// The driver releases one gate at a time; when no actor waits at a gate (all are inside backend calls:
// runs, blocked faults) it lets the event loop turn so that the backend progresses. Every drive is
// bounded by a deadline: an actor still busy then is reported with what it was doing.

import type fc from 'fast-check'

interface Actor {
  name: string
  /** What the actor is doing now (for the report when the deadline passes). */
  doing: string
  done: boolean
}

export class RaceSchedule {
  private readonly actors: Actor[] = []

  constructor(private readonly s: fc.Scheduler) {}

  /** Starts `body` as actor `name`; `gate(label)` is where the scheduler may run another actor first. */
  spawn(name: string, body: (gate: (label: string) => Promise<void>) => Promise<void>): Promise<void> {
    const actor: Actor = { name, doing: 'starting', done: false }
    this.actors.push(actor)
    const gate = (label: string): Promise<void> => {
      actor.doing = `waiting to ${label}`
      return this.s.schedule(Promise.resolve(), `${name}: ${label}`).then(() => {
        actor.doing = label
      })
    }
    return body(gate).finally(() => {
      actor.done = true
      actor.doing = 'done'
    })
  }

  /**
   * Releases gates until every promise of `work` settles (rejecting with the first rejection), or throws
   * when `deadlineMs` passes with the actors still busy, naming what each was doing.
   */
  async drive(work: Promise<void>[], deadlineMs: number): Promise<void> {
    const all = Promise.all(work)
    let settled = false
    const markSettled = () => { settled = true }
    all.then(markSettled, markSettled)
    const deadline = performance.now() + deadlineMs
    while (!settled) {
      if (performance.now() > deadline) {
        const busy = this.actors.filter((a) => !a.done).map((a) => `${a.name} (${a.doing})`)
        throw new Error(`no progress within ${deadlineMs} ms: ${busy.join('; ')}`)
      }
      if (this.s.count() > 0) await this.s.waitNext(1)
      else await new Promise((resolve) => setTimeout(resolve, 1))
    }
    await all
  }
}
