// Punch page `page` out of slot id `id`'s shmem file: madvise(MADV_REMOVE) over it in the memslot's own
// mapping, which is vfs_fallocate(PUNCH_HOLE | KEEP_SIZE) (madvise_remove()). The model: accepted; the page
// leaves the page cache and every mapping and reads as zero again; the MMU notifiers make KVM drop its
// mapping, so the next guest access faults again: it exits again where the page's userfault bit is set,
// and blocks again where the range is registered MISSING (host-model.ts).

import type fc from 'fast-check'
import { MADV_REMOVE } from '../../../harness/uapi/fs.ts'
import { PAGE, type FuzzModel, type SlotId } from '../model.ts'
import { expectOutcome, outcomeOf } from '../outcome.ts'
import type { FuzzReal } from '../real.ts'

export class PunchHole implements fc.AsyncCommand<FuzzModel, FuzzReal> {
  constructor(readonly id: SlotId, readonly page: number) {}

  check(_m: Readonly<FuzzModel>): boolean {
    return true
  }

  async run(m: FuzzModel, r: FuzzReal): Promise<void> {
    const got = await outcomeOf(r.host.get(this.id)!.mem.madvise(MADV_REMOVE, BigInt(this.page) * PAGE, PAGE))
    expectOutcome(got, 'ok', this.toString())
    m.host.pages.get(this.id)![this.page] = { cache: false, pte: 'no', value: 0 }
    m.mapped.delete(`${this.id}:${this.page}`)
  }

  toString(): string {
    return `madvise(slot ${this.id} memory page ${this.page}, MADV_REMOVE)`
  }
}
