// UFFDIO_COPY a page whose u32 is `value` into page `page` of slot id `id`'s memslot mapping, with no
// fault pending (demand_paging_test -k resolves KVM Userfault exits this way, "ahead of time"). The model
// (mfill_atomic(), shmem_mfill_atomic_pte()): an unregistered range -> ENOENT; a page already in the page
// cache -> EEXIST; otherwise the page is in the cache and mapped, with that value. KVM had no mapping of a
// page that was not cached, and gets none.

import type fc from 'fast-check'
import { pageWith } from '../host-access.ts'
import { PAGE, type FuzzModel, type SlotId } from '../model.ts'
import { expectOutcome, outcomeOf } from '../outcome.ts'
import type { FuzzReal } from '../real.ts'

export class UffdCopy implements fc.AsyncCommand<FuzzModel, FuzzReal> {
  constructor(readonly id: SlotId, readonly page: number, readonly value: number) {}

  check(m: Readonly<FuzzModel>): boolean {
    return m.host.uffd.open
  }

  async run(m: FuzzModel, r: FuzzReal): Promise<void> {
    const p = m.host.pages.get(this.id)![this.page]!
    const want = !m.host.uffd.modes.has(this.id) ? 'ENOENT' : p.cache ? 'EEXIST' : 'ok'
    let copied = 0n
    const got = await outcomeOf(r.uffd!.copy({ dst: r.host.get(this.id)!.mem.addr + BigInt(this.page) * PAGE, data: pageWith(this.value) }).then((n) => (copied = n)))
    expectOutcome(got, want, this.toString())
    if (want !== 'ok') return
    if (copied !== PAGE) throw new Error(`${this.toString()}: the model predicts 4096 bytes copied, the backend gave ${copied}`)
    Object.assign(p, { cache: true, pte: 'yes', value: this.value })
  }

  toString(): string {
    return `UFFDIO_COPY(slot ${this.id} memory page ${this.page}, 0x${this.value.toString(16)})`
  }
}
