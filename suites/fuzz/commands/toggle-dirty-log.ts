// Turn KVM_MEM_LOG_DIRTY_PAGES on or off on memslot `id`. The model: accepted; KVM may write-protect or
// zap the slot's mappings, so every mapped page becomes `maybe` mapped.

import type fc from 'fast-check'
import { flagNames, KVM_MEM_LOG_DIRTY_PAGES, type FuzzModel, type SlotId } from '../model.ts'
import { expectOutcome, outcomeOf } from '../outcome.ts'
import type { FuzzReal } from '../real.ts'

export class ToggleDirtyLog implements fc.AsyncCommand<FuzzModel, FuzzReal> {
  private label = ''
  constructor(readonly id: SlotId) {}

  check(m: Readonly<FuzzModel>): boolean {
    return m.slots.has(this.id)
  }

  async run(m: FuzzModel, r: FuzzReal): Promise<void> {
    const slot = m.slots.get(this.id)!
    const flags = slot.flags ^ KVM_MEM_LOG_DIRTY_PAGES
    this.label = `flags ${flagNames(flags)}`
    expectOutcome(await outcomeOf(r.region2(this.id, slot.gpa, flags)), 'ok', this.toString())
    slot.flags = flags
    for (const key of m.mapped.keys()) if (key.startsWith(`${this.id}:`)) m.mapped.set(key, 'maybe')
  }

  toString(): string {
    return `KVM_SET_USER_MEMORY_REGION2(slot ${this.id}, toggle LOG_DIRTY_PAGES${this.label ? `: ${this.label}` : ''})`
  }
}
