// Turn KVM_MEM_USERFAULT on or off on memslot `id` (a flags-only change). The model: accepted; turning
// it on zaps the slot, so pages mapped before exit again (upstream-selftests.md §F.3), and may zap
// the other slots too (x86's slot-zap quirk: flushSlot in model.ts).

import type fc from 'fast-check'
import { flagNames, flushSlot, KVM_MEM_USERFAULT, type FuzzModel, type SlotId } from '../model.ts'
import { expectOutcome, outcomeOf } from '../outcome.ts'
import type { FuzzReal } from '../real.ts'

export class ToggleUserfault implements fc.AsyncCommand<FuzzModel, FuzzReal> {
  private label = ''
  constructor(readonly id: SlotId) {}

  check(m: Readonly<FuzzModel>): boolean {
    return m.slots.has(this.id)
  }

  async run(m: FuzzModel, r: FuzzReal): Promise<void> {
    const slot = m.slots.get(this.id)!
    const flags = slot.flags ^ KVM_MEM_USERFAULT
    this.label = `flags ${flagNames(flags)}`
    expectOutcome(await outcomeOf(r.region2(this.id, slot.gpa, flags)), 'ok', this.toString())
    slot.flags = flags
    if (flags & KVM_MEM_USERFAULT) flushSlot(m, this.id)
  }

  toString(): string {
    return `KVM_SET_USER_MEMORY_REGION2(slot ${this.id}, toggle USERFAULT${this.label ? `: ${this.label}` : ''})`
  }
}
