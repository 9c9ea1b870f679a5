// What a memslot change does to a VM's stage-2 mappings on x86: kvm_invalidate_memslot() zaps a slot that
// is being deleted or moved, and kvm_arch_commit_memory_region() -> kvm_mmu_slot_apply_flags() reacts to a
// FLAGS_ONLY change, with the KVM Userfault series' additions (userfault.ts has the table of its rules).
// A CREATE needs nothing: no gfn of a new slot can be mapped.

import { KVM_MEM_LOG_DIRTY_PAGES } from '../../harness/uapi/kvm.ts'
import { KVM_MEM_USERFAULT } from '../../harness/uapi/series.ts'
import type { AddressSpace } from './address-space.ts'
import { maxMappingLevel } from './mapping-level.ts'
import type { MemoryAttributeMap } from './memory-attributes.ts'
import type { Memslot } from './memslots.ts'
import type { Stage2 } from './stage2.ts'

/** The VM state the effects reach. */
export interface SlotMmu {
  readonly stage2: Stage2
  /** KVM_X86_QUIRK_SLOT_ZAP_ALL is in effect (not disabled through KVM_CAP_DISABLE_QUIRKS2). */
  readonly slotZapAll: boolean
  readonly attributes: MemoryAttributeMap
  readonly host: AddressSpace
  isPrivate(gfn: number): boolean
}

/**
 * kvm_arch_flush_shadow_memslot() -> kvm_mmu_zap_memslot(): with KVM_X86_QUIRK_SLOT_ZAP_ALL every mapping
 * of the VM goes (kvm_mmu_zap_all_fast()), without it only the slot's.
 */
export function flushMemslot(mmu: SlotMmu, slot: Memslot): void {
  if (mmu.slotZapAll) mmu.stage2.zapAll()
  else mmu.stage2.zap(slot.baseGfn, slot.baseGfn + slot.npages)
}

/** x86 kvm_mmu_slot_apply_flags() for a FLAGS_ONLY change from `old` to `slot`. */
export function applySlotFlags(mmu: SlotMmu, old: Memslot, slot: Memslot): void {
  const toggled = old.flags ^ slot.flags
  const start = slot.baseGfn
  const end = slot.baseGfn + slot.npages
  // KVM Userfault, enabling (v2: kvm_mmu_slot_apply_flags() -> kvm_arch_flush_shadow_memslot(); v3:
  // kvm_commit_memory_region() -> kvm_arch_userfault_enabled(), which flushes the slot): every page must
  // fault again, so that its bit is read.
  if (toggled & KVM_MEM_USERFAULT && slot.flags & KVM_MEM_USERFAULT) flushMemslot(mmu, slot)
  // Dirty logging, only when LOG_DIRTY_PAGES itself toggled (v2/v3 dropped the WARN that assumed every
  // FLAGS_ONLY change toggles it): enabling splits huge mappings (kvm_mmu_slot_try_split_huge_pages(),
  // eager page splitting, x86's default), disabling recovers them (kvm_mmu_recover_huge_pages(), 6.13+).
  if (toggled & KVM_MEM_LOG_DIRTY_PAGES) {
    if (slot.flags & KVM_MEM_LOG_DIRTY_PAGES) mmu.stage2.split(start, end)
    else recoverHugePages(mmu, slot)
  }
  // KVM Userfault, disabling (x86 v2/v3): huge mappings are recovered, "consistent with dirty log
  // disabling", even while dirty logging stays on: recovery does not look at it. Modelled as the series
  // reads; whether the kernel's recovery path then respects dirty logging was NOT verified.
  if (toggled & KVM_MEM_USERFAULT && !(slot.flags & KVM_MEM_USERFAULT)) recoverHugePages(mmu, slot)
}

/**
 * kvm_mmu_recover_huge_pages(): each 2 MiB region of the slot that holds 4 KiB leaves becomes one 2 MiB
 * leaf, in place, where the region may be mapped huge (never while KVM_MEM_USERFAULT is set).
 */
export function recoverHugePages(mmu: SlotMmu, slot: Memslot): void {
  for (const base of mmu.stage2.regionsWithSmall(slot.baseGfn, slot.baseGfn + slot.npages)) {
    const fromGmem = mmu.isPrivate(base) || slot.gmemOnly === true
    const level = maxMappingLevel({ slot, gfn: base, fromGmem, attributes: mmu.attributes, host: mmu.host, recovering: true })
    if (level === '2M') mmu.stage2.map(base, '2M')
  }
}
