// Dirty logging: a LOG_DIRTY_PAGES memslot's bitmap, mark_page_dirty_in_slot() and KVM_GET_DIRTY_LOG.
//
// The bitmap is sparse (the set of dirty page offsets): a slot of 2^31 - 1 pages would need 256 MiB as
// a flat array, and most of it stays clean. It is laid out as the kernel's only when read.

import type { ErrnoName } from '../../harness/uapi/errno.ts'
import type { MemslotTable } from './memslot-table.ts'
import type { MemslotRules } from './memslots.ts'

export class DirtyBitmap {
  private readonly dirty = new Set<number>()

  constructor(readonly npages: number) {}

  /** kvm_dirty_bitmap_bytes(): ALIGN(npages, BITS_PER_LONG) / 8. */
  get bytes(): number {
    return Math.ceil(this.npages / 64) * 8
  }

  get dirtyCount(): number {
    return this.dirty.size
  }

  /** Sets the bit of page `rel` (gfn - base_gfn). */
  mark(rel: number): void {
    if (rel < 0 || rel >= this.npages) throw new RangeError(`page ${rel} is outside a ${this.npages}-page slot`)
    this.dirty.add(rel)
  }

  /** The bitmap as little-endian 64-bit words (bit n%64 of word n/64), then cleared. */
  takeBytes(): Uint8Array {
    const out = new Uint8Array(this.bytes)
    for (const rel of this.dirty) out[rel >> 3]! |= 1 << (rel & 7)
    this.dirty.clear()
    return out
  }
}

/**
 * kvm_vm_ioctl_get_dirty_log() -> kvm_get_dirty_log_protect(): as_id out of range or id past
 * KVM_USER_MEM_SLOTS -> EINVAL; no such slot, or dirty logging off on it -> ENOENT. Without
 * KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 the bits are returned and cleared (and the pages write-protected
 * again, which the stage-2 model will mirror).
 */
export function getDirtyLog(table: MemslotTable, rules: MemslotRules, slotField: number): Uint8Array | ErrnoName {
  const asId = slotField >>> 16
  const id = slotField & 0xffff
  if (asId >= rules.nrAsIds || id >= rules.nrMemslots) return 'EINVAL'
  const slot = table.get(asId, id)
  if (slot === undefined || slot.dirtyBitmap === null) return 'ENOENT'
  return slot.dirtyBitmap.takeBytes()
}

/**
 * mark_page_dirty_in_slot() by gfn: the later vCPU model calls this for each guest write. A gfn with no
 * memslot, or a slot without dirty logging, records nothing. Returns whether a bit was set.
 */
export function markDirty(table: MemslotTable, asId: number, gfn: number): boolean {
  const slot = table.find(asId, gfn)
  if (slot === undefined || slot.dirtyBitmap === null) return false
  slot.dirtyBitmap.mark(gfn - slot.baseGfn)
  return true
}
