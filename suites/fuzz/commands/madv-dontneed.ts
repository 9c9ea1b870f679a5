// Drop the memslot mapping's PTE of page `page` of slot id `id`: madvise(MADV_DONTNEED). The model:
// accepted; the page stays in the shmem page cache (its data too) but the mapping no longer maps it, so
// the next access is a minor fault (blocks where the range is registered MINOR); the MMU notifiers make
// KVM drop its mapping of the page, so a set userfault bit exits again (host-model.ts).

import type fc from 'fast-check'
import { MADV_DONTNEED } from '../../../harness/uapi/fs.ts'
import { PAGE, type FuzzModel, type SlotId } from '../model.ts'
import { expectOutcome, outcomeOf } from '../outcome.ts'
import type { FuzzReal } from '../real.ts'

export class MadvDontneed implements fc.AsyncCommand<FuzzModel, FuzzReal> {
  constructor(readonly id: SlotId, readonly page: number) {}

  check(_m: Readonly<FuzzModel>): boolean {
    return true
  }

  async run(m: FuzzModel, r: FuzzReal): Promise<void> {
    const got = await outcomeOf(r.host.get(this.id)!.mem.madvise(MADV_DONTNEED, BigInt(this.page) * PAGE, PAGE))
    expectOutcome(got, 'ok', this.toString())
    m.host.pages.get(this.id)![this.page]!.pte = 'no'
    m.mapped.delete(`${this.id}:${this.page}`)
  }

  toString(): string {
    return `madvise(slot ${this.id} memory page ${this.page}, MADV_DONTNEED)`
  }
}
