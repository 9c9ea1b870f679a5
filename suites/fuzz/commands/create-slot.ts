// Create memslot `id` at base gpa `at` with `flags`, through KVM_SET_USER_MEMORY_REGION2 or the legacy
// ioctl. The model: the legacy ioctl refuses any flag outside LOG_DIRTY_PAGES|READONLY (EINVAL), an
// overlap with another slot is EEXIST, otherwise the slot exists with its flags and nothing mapped.

import type fc from 'fast-check'
import { baseGpa, flagNames, hex, KVM_MEM_LOG_DIRTY_PAGES, overlaps, PAGE, SLOT_PAGES, type FuzzModel, type SlotId } from '../model.ts'
import { expectOutcome, outcomeOf } from '../outcome.ts'
import type { FuzzReal } from '../real.ts'

export class CreateSlot implements fc.AsyncCommand<FuzzModel, FuzzReal> {
  constructor(readonly id: SlotId, readonly at: number, readonly flags: number, readonly legacy: boolean) {}

  check(m: Readonly<FuzzModel>): boolean {
    return !m.slots.has(this.id)
  }

  async run(m: FuzzModel, r: FuzzReal): Promise<void> {
    const gpa = baseGpa(this.at)
    const want = this.legacy && (this.flags & ~KVM_MEM_LOG_DIRTY_PAGES) !== 0 ? 'EINVAL' : overlaps(m, gpa) ? 'EEXIST' : 'ok'
    const got = await outcomeOf(
      this.legacy
        ? r.vm.setUserMemoryRegion({
            slot: this.id, flags: this.flags, guestPhysAddr: gpa, memorySize: BigInt(SLOT_PAGES) * PAGE, userspaceAddr: r.host.get(this.id)!.mem.addr,
          })
        : r.region2(this.id, gpa, this.flags),
    )
    if (got === 'ok' && want !== 'ok') await r.region2(this.id, gpa, 0, 0n) // keep the VM as the model has it
    expectOutcome(got, want, this.toString())
    if (want === 'ok') m.slots.set(this.id, { gpa, flags: this.flags })
  }

  toString(): string {
    const ioctl = this.legacy ? 'KVM_SET_USER_MEMORY_REGION' : 'KVM_SET_USER_MEMORY_REGION2'
    return `${ioctl}(slot ${this.id}, gpa ${hex(baseGpa(this.at))}, ${SLOT_PAGES} pages, flags ${flagNames(this.flags)})`
  }
}
