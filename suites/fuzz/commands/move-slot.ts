// Move memslot `id` to base gpa `to`, flags unchanged. The model: an overlap with another slot is
// EEXIST; the same gpa changes nothing (KVM returns 0 early); otherwise the slot moves, its pages unmapped and other slots' pages maybe (x86's slot-zap quirk zaps them all).

import type fc from 'fast-check'
import { baseGpa, hex, overlaps, flushSlot, type FuzzModel, type SlotId } from '../model.ts'
import { expectOutcome, outcomeOf } from '../outcome.ts'
import type { FuzzReal } from '../real.ts'

export class MoveSlot implements fc.AsyncCommand<FuzzModel, FuzzReal> {
  constructor(readonly id: SlotId, readonly to: number) {}

  check(m: Readonly<FuzzModel>): boolean {
    return m.slots.has(this.id)
  }

  async run(m: FuzzModel, r: FuzzReal): Promise<void> {
    const slot = m.slots.get(this.id)!
    const gpa = baseGpa(this.to)
    const want = overlaps(m, gpa, this.id) ? 'EEXIST' : 'ok'
    const got = await outcomeOf(r.region2(this.id, gpa, slot.flags))
    expectOutcome(got, want, this.toString())
    if (want === 'ok' && gpa !== slot.gpa) {
      slot.gpa = gpa
      flushSlot(m, this.id)
    }
  }

  toString(): string {
    return `KVM_SET_USER_MEMORY_REGION2(slot ${this.id}, move to gpa ${hex(baseGpa(this.to))})`
  }
}
