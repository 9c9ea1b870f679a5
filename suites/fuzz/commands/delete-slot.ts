// Delete memslot `id` (size 0). The model: a missing slot is EINVAL; a present one is gone, its pages unmapped and other slots' pages maybe (x86's slot-zap quirk zaps them all).

import type fc from 'fast-check'
import type { FuzzModel, SlotId } from '../model.ts'
import { flushSlot } from '../model.ts'
import { expectOutcome, outcomeOf } from '../outcome.ts'
import type { FuzzReal } from '../real.ts'

export class DeleteSlot implements fc.AsyncCommand<FuzzModel, FuzzReal> {
  constructor(readonly id: SlotId) {}

  check(_m: Readonly<FuzzModel>): boolean {
    return true
  }

  async run(m: FuzzModel, r: FuzzReal): Promise<void> {
    const slot = m.slots.get(this.id)
    const got = await outcomeOf(r.region2(this.id, slot?.gpa ?? 0n, slot?.flags ?? 0, 0n))
    expectOutcome(got, slot === undefined ? 'EINVAL' : 'ok', this.toString())
    m.slots.delete(this.id)
    flushSlot(m, this.id)
  }

  toString(): string {
    return `KVM_SET_USER_MEMORY_REGION2(slot ${this.id}, size 0)`
  }
}
