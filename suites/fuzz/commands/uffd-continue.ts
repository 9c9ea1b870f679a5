// UFFDIO_CONTINUE page `page` of slot id `id`'s memslot mapping, with no fault pending. The model
// (mfill_atomic(), mfill_atomic_pte_continue()): an unregistered range -> ENOENT; no page in the page cache
// -> EFAULT; a PTE already there -> EEXIST (either where the model only knows it `maybe` is, after a
// fault-around); otherwise the cached page is mapped. The kernel does not require MINOR registration, but
// UFFDIO_REGISTER only promises CONTINUE on MINOR ranges, so a MISSING-only range may refuse it (EINVAL).

import type fc from 'fast-check'
import { PAGE, type FuzzModel, type SlotId } from '../model.ts'
import { expectOneOf, outcomeOf } from '../outcome.ts'
import type { FuzzReal } from '../real.ts'

export class UffdContinue implements fc.AsyncCommand<FuzzModel, FuzzReal> {
  constructor(readonly id: SlotId, readonly page: number) {}

  check(m: Readonly<FuzzModel>): boolean {
    return m.host.uffd.open
  }

  async run(m: FuzzModel, r: FuzzReal): Promise<void> {
    const p = m.host.pages.get(this.id)![this.page]!
    const mode = m.host.uffd.modes.get(this.id)
    const wants = mode === undefined ? ['ENOENT']
      : !p.cache ? ['EFAULT']
      : p.pte === 'yes' ? ['EEXIST'] : p.pte === 'no' ? ['ok'] : ['ok', 'EEXIST']
    if (mode === 'MISSING') wants.push('EINVAL')
    const got = await outcomeOf(r.uffd!.continue({ start: r.host.get(this.id)!.mem.addr + BigInt(this.page) * PAGE, len: PAGE }))
    expectOneOf(got, wants, this.toString())
    if (got === 'ok' || got === 'EEXIST') p.pte = 'yes'
  }

  toString(): string {
    return `UFFDIO_CONTINUE(slot ${this.id} memory page ${this.page})`
  }
}
