// The fuzzer's model of KVM: deliberately simpler than the emulator, and obviously right from the rules
// (upstream-selftests.md §C.3 for memslots, §F.3 for KVM Userfault). It holds the memslots (gpa, flags),
// each slot id's userfault bitmap bits (the bitmap belongs to the host side and outlives the slot), and
// which pages KVM has mapped: `yes` after an access, `maybe` where a rule lets the kernel choose (a
// dirty-logging toggle may write-protect or zap). The host side (shmem pages, userfaultfd) is in
// host-model.ts.

import { KVM_MEM_LOG_DIRTY_PAGES } from '../../harness/uapi/kvm.ts'
import { KVM_MEM_USERFAULT } from '../../harness/uapi/series.ts'
import { emptyHost, type HostModel } from './host-model.ts'

export const PAGE = 4096n
/** Every fuzz memslot has this many pages; bases are a page apart, so neighbours overlap. */
export const SLOT_PAGES = 2
export const BASE_GPA = 0x1000_0000n
export const GPA_STEPS = 4
export const SLOT_IDS = [1, 2, 3] as const
export type SlotId = (typeof SLOT_IDS)[number]

export { KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_USERFAULT }

/** Base gpa number `i` (0 .. GPA_STEPS-1). */
export const baseGpa = (i: number): bigint => BASE_GPA + BigInt(i) * PAGE

export interface SlotModel {
  gpa: bigint
  flags: number
}

export interface FuzzModel {
  slots: Map<SlotId, SlotModel>
  /** Set bits of each slot id's bitmap. */
  bits: Map<SlotId, Set<number>>
  /** `${slot}:${page}` of pages KVM may have mapped. */
  mapped: Map<string, 'yes' | 'maybe'>
  host: HostModel
}

export function emptyModel(): FuzzModel {
  return { slots: new Map(), bits: new Map(SLOT_IDS.map((s) => [s, new Set<number>()])), mapped: new Map(), host: emptyHost() }
}

/** Whether [gpa, +SLOT_PAGES) overlaps a slot other than `except`. */
export function overlaps(m: Readonly<FuzzModel>, gpa: bigint, except?: SlotId): boolean {
  const end = gpa + BigInt(SLOT_PAGES) * PAGE
  for (const [id, s] of m.slots) {
    if (id === except) continue
    if (gpa < s.gpa + BigInt(SLOT_PAGES) * PAGE && s.gpa < end) return true
  }
  return false
}

/** The slot and page a gpa falls in, if any. */
export function slotAt(m: Readonly<FuzzModel>, gpa: bigint): { id: SlotId; page: number; slot: SlotModel } | undefined {
  for (const [id, slot] of m.slots) {
    if (gpa >= slot.gpa && gpa < slot.gpa + BigInt(SLOT_PAGES) * PAGE) return { id, page: Number((gpa - slot.gpa) / PAGE), slot }
  }
  return undefined
}

/** KVM forgets every mapping of a slot (delete, move, KVM_MEM_USERFAULT enabled). */
export function zap(m: FuzzModel, id: SlotId): void {
  for (const key of [...m.mapped.keys()]) if (key.startsWith(`${id}:`)) m.mapped.delete(key)
}

/**
 * kvm_arch_flush_shadow_memslot() of a slot (delete, move, KVM_MEM_USERFAULT enabled): its mappings
 * are gone, and the other slots' may be too: x86 with KVM_X86_QUIRK_SLOT_ZAP_ALL (the default) zaps every
 * mapping of the VM, without it only the slot's.
 */
export function flushSlot(m: FuzzModel, id: SlotId): void {
  zap(m, id)
  for (const key of m.mapped.keys()) m.mapped.set(key, 'maybe')
}

export { hex } from '../../harness/hex.ts'

export function flagNames(flags: number): string {
  const names = [flags & KVM_MEM_LOG_DIRTY_PAGES ? 'LOG_DIRTY_PAGES' : '', flags & KVM_MEM_USERFAULT ? 'USERFAULT' : ''].filter(Boolean)
  return names.length === 0 ? '0' : names.join('|')
}
