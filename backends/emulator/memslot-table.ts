// One VM's memslots (struct kvm_memslots, one set per address space): by id, and by gfn in order, so
// that the overlap check and gfn lookups stay logarithmic with 32764 slots.

import type { Memslot } from './memslots.ts'

class AddressSpaceSlots {
  readonly byId = new Map<number, Memslot>()
  /** Sorted by base_gfn; the ranges never overlap, so their ends are sorted too. */
  readonly byGfn: Memslot[] = []

  /** The index of the first slot whose range ends after `gfn`. */
  firstEndingAfter(gfn: number): number {
    let lo = 0
    let hi = this.byGfn.length
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      const s = this.byGfn[mid]!
      if (s.baseGfn + s.npages <= gfn) lo = mid + 1
      else hi = mid
    }
    return lo
  }
}

export class MemslotTable {
  private readonly spaces: AddressSpaceSlots[]
  /** kvm->nr_memslot_pages */
  private pages = 0

  constructor(nrAsIds: number) {
    this.spaces = Array.from({ length: nrAsIds }, () => new AddressSpaceSlots())
  }

  get totalPages(): number {
    return this.pages
  }

  get size(): number {
    return this.spaces.reduce((n, s) => n + s.byId.size, 0)
  }

  /** id_to_memslot() */
  get(asId: number, id: number): Memslot | undefined {
    return this.spaces[asId]?.byId.get(id)
  }

  /** __gfn_to_memslot(): the slot of `asId` that holds `gfn`. */
  find(asId: number, gfn: number): Memslot | undefined {
    const space = this.spaces[asId]
    if (space === undefined) return undefined
    const slot = space.byGfn[space.firstEndingAfter(gfn)]
    return slot !== undefined && slot.baseGfn <= gfn ? slot : undefined
  }

  /** kvm_check_memslot_overlap(): does a slot other than `id` hold any gfn of [start, end)? */
  overlaps(asId: number, id: number, start: number, end: number): boolean {
    const space = this.spaces[asId]
    if (space === undefined) return false
    for (let i = space.firstEndingAfter(start); i < space.byGfn.length; i++) {
      const slot = space.byGfn[i]!
      if (slot.baseGfn >= end) return false
      if (slot.id !== id) return true
    }
    return false
  }

  insert(slot: Memslot): void {
    const space = this.space(slot.asId)
    space.byId.set(slot.id, slot)
    space.byGfn.splice(space.firstEndingAfter(slot.baseGfn), 0, slot)
    this.pages += slot.npages
  }

  remove(slot: Memslot): void {
    const space = this.space(slot.asId)
    if (space.byId.get(slot.id) !== slot) return
    space.byId.delete(slot.id)
    const i = space.byGfn.indexOf(slot, space.firstEndingAfter(slot.baseGfn))
    if (i >= 0) space.byGfn.splice(i, 1)
    this.pages -= slot.npages
  }

  /** Removes every slot at once (kvm_destroy_vm()); returns them. */
  clear(): Memslot[] {
    const slots = [...this.all()]
    for (const space of this.spaces) {
      space.byId.clear()
      space.byGfn.length = 0
    }
    this.pages = 0
    return slots
  }

  /** Every slot, address space by address space, in gfn order. */
  *all(): IterableIterator<Memslot> {
    for (const space of this.spaces) yield* space.byGfn
  }

  private space(asId: number): AddressSpaceSlots {
    const space = this.spaces[asId]
    if (space === undefined) throw new RangeError(`address space ${asId} does not exist`)
    return space
  }
}
