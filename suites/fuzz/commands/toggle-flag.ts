// Turn KVM_MEM_LOG_DIRTY_PAGES or KVM_MEM_USERFAULT on or off on memslot `id` (a flags-only change). The
// model: accepted; then what KVM may do to the mappings differs per flag (FLAGS below).

import type fc from 'fast-check'
import { flagNames, flushSlot, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_USERFAULT, type FuzzModel, type SlotId } from '../model.ts'
import { expectOutcome, outcomeOf } from '../outcome.ts'
import type { FuzzReal } from '../real.ts'

/** Each flag's bit and what the change does to KVM's mappings. */
const FLAGS = {
  // KVM may write-protect or zap the slot's mappings: every mapped page becomes `maybe` mapped.
  LOG_DIRTY_PAGES: {
    bit: KVM_MEM_LOG_DIRTY_PAGES,
    apply(m: FuzzModel, id: SlotId, _flags: number) {
      for (const key of m.mapped.keys()) if (key.startsWith(`${id}:`)) m.mapped.set(key, 'maybe')
    },
  },
  // Turning it on zaps the slot, so pages mapped before exit again (upstream-selftests.md §F.3), and may
  // zap the other slots too (x86's slot-zap quirk: flushSlot in model.ts).
  USERFAULT: {
    bit: KVM_MEM_USERFAULT,
    apply(m: FuzzModel, id: SlotId, flags: number) {
      if (flags & KVM_MEM_USERFAULT) flushSlot(m, id)
    },
  },
}

type ToggledFlag = keyof typeof FLAGS

export class ToggleFlag implements fc.AsyncCommand<FuzzModel, FuzzReal> {
  private label = ''
  constructor(readonly id: SlotId, readonly flag: ToggledFlag) {}

  check(m: Readonly<FuzzModel>): boolean {
    return m.slots.has(this.id)
  }

  async run(m: FuzzModel, r: FuzzReal): Promise<void> {
    const slot = m.slots.get(this.id)!
    const flags = slot.flags ^ FLAGS[this.flag].bit
    this.label = `flags ${flagNames(flags)}`
    expectOutcome(await outcomeOf(r.region2(this.id, slot.gpa, flags)), 'ok', this.toString())
    slot.flags = flags
    FLAGS[this.flag].apply(m, this.id, flags)
  }

  toString(): string {
    return `KVM_SET_USER_MEMORY_REGION2(slot ${this.id}, toggle ${this.flag}${this.label ? `: ${this.label}` : ''})`
  }
}
