// What a guest access or a pre-fault is aimed at: a fixed gpa (perhaps where no slot is), or page `page`
// of memslot `id` wherever that slot is when the command runs (a slot moves). The gpa it resolved to is
// kept for the command's description.

import { hex, PAGE, type FuzzModel, type SlotId } from './model.ts'

export type TouchTarget = bigint | { id: SlotId; page: number }

export class GuestTarget {
  private resolved: bigint | undefined

  constructor(readonly target: TouchTarget) {
    if (typeof target === 'bigint') this.resolved = target
  }

  /** Whether the command can run: a fixed gpa always, a slot page while its slot exists. */
  exists(m: Readonly<FuzzModel>): boolean {
    return typeof this.target === 'bigint' || m.slots.has(this.target.id)
  }

  /** The gpa the target names in `m` (remembered for describe()). */
  gpa(m: Readonly<FuzzModel>): bigint {
    if (typeof this.target !== 'bigint') this.resolved = m.slots.get(this.target.id)!.gpa + BigInt(this.target.page) * PAGE
    return this.resolved!
  }

  /** "gpa 0x…", or "slot 1 page 0" with the gpa it resolved to once it ran. */
  describe(): string {
    if (typeof this.target === 'bigint') return `gpa ${hex(this.target)}`
    return `slot ${this.target.id} page ${this.target.page}${this.resolved === undefined ? '' : ` (gpa ${hex(this.resolved)})`}`
  }
}
