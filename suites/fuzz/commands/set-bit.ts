// Set or clear bit `page` of slot id `id`'s userfault bitmap. The model: the bit is as asked; mappings
// are untouched (a set bit does not unmap a page KVM already mapped, §F.3).

import type fc from 'fast-check'
import type { FuzzModel, SlotId } from '../model.ts'
import type { FuzzReal } from '../real.ts'

export class SetBit implements fc.AsyncCommand<FuzzModel, FuzzReal> {
  constructor(readonly id: SlotId, readonly page: number, readonly value: boolean) {}

  check(_m: Readonly<FuzzModel>): boolean {
    return true
  }

  async run(m: FuzzModel, r: FuzzReal): Promise<void> {
    const bitmap = r.host.get(this.id)!.bitmap
    await (this.value ? bitmap.set(this.page) : bitmap.clear(this.page))
    if (this.value) m.bits.get(this.id)!.add(this.page)
    else m.bits.get(this.id)!.delete(this.page)
  }

  toString(): string {
    return `bitmap[slot ${this.id}].${this.value ? 'set' : 'clear'}(${this.page})`
  }
}
