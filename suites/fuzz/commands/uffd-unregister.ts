// UFFDIO_UNREGISTER slot id `id`'s memslot mapping. The model: accepted, registered or not (a VMA with no
// userfaultfd is skipped, userfaultfd_unregister()); accesses no longer consult the userfaultfd.

import type fc from 'fast-check'
import { PAGE, SLOT_PAGES, type FuzzModel, type SlotId } from '../model.ts'
import { expectOutcome, outcomeOf } from '../outcome.ts'
import type { FuzzReal } from '../real.ts'

export class UffdUnregister implements fc.AsyncCommand<FuzzModel, FuzzReal> {
  constructor(readonly id: SlotId) {}

  check(m: Readonly<FuzzModel>): boolean {
    return m.host.uffd.open
  }

  async run(m: FuzzModel, r: FuzzReal): Promise<void> {
    const got = await outcomeOf(r.uffd!.unregister({ start: r.host.get(this.id)!.mem.addr, len: BigInt(SLOT_PAGES) * PAGE }))
    expectOutcome(got, 'ok', this.toString())
    m.host.uffd.modes.delete(this.id)
  }

  toString(): string {
    return `UFFDIO_UNREGISTER(slot ${this.id} memory)`
  }
}
