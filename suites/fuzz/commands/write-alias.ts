// Store the u32 `value` at page `page` of slot id `id`'s shmem file through the alias mapping (a second
// MAP_SHARED mapping of the file, never registered), as demand_paging_test fills the page cache before a
// MINOR run. The model: the page is in the page cache with that value; the memslot mapping's PTE and
// KVM's mapping are unchanged (the same page, if it was cached; none of either, if it was not).

import type fc from 'fast-check'
import { PAGE, type FuzzModel, type SlotId } from '../model.ts'
import type { FuzzReal } from '../real.ts'

export class WriteAlias implements fc.AsyncCommand<FuzzModel, FuzzReal> {
  constructor(readonly id: SlotId, readonly page: number, readonly value: number) {}

  check(_m: Readonly<FuzzModel>): boolean {
    return true
  }

  async run(m: FuzzModel, r: FuzzReal): Promise<void> {
    const bytes = new Uint8Array(8)
    new DataView(bytes.buffer).setUint32(0, this.value >>> 0, true)
    await (await r.alias(this.id)).write(BigInt(this.page) * PAGE, bytes)
    const p = m.host.pages.get(this.id)![this.page]!
    p.cache = true
    p.value = this.value
  }

  toString(): string {
    return `alias(slot ${this.id} memory).write(page ${this.page}, 0x${this.value.toString(16)})`
  }
}
