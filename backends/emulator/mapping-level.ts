// How large a stage-2 mapping x86 KVM installs for a fault: kvm_mmu_hugepage_adjust() over
// kvm_mmu_max_mapping_level(), for 4 KiB and 2 MiB leaves (1 GiB leaves are not modelled: no backing the
// emulator offers has 1 GiB host pages).

import { KVM_MEM_LOG_DIRTY_PAGES, KVM_MEMORY_ATTRIBUTE_PRIVATE } from '../../harness/uapi/kvm.ts'
import { KVM_MEM_USERFAULT } from '../../harness/uapi/series.ts'
import type { AddressSpace } from './address-space.ts'
import type { MemoryAttributeMap } from './memory-attributes.ts'
import type { Memslot } from './memslots.ts'
import { PAGE_SHIFT } from './page-store.ts'
import { PAGES_PER_2M, hugeBase, type MappingLevel } from './stage2.ts'

/** What the level of one mapping depends on. */
export interface LevelQuery {
  slot: Memslot
  gfn: number
  /** The page comes from guest_memfd (a private fault, or a KVM_MEMSLOT_GMEM_ONLY slot). */
  fromGmem: boolean
  attributes: MemoryAttributeMap
  host: AddressSpace
  /**
   * kvm_mmu_recover_huge_pages() asks, not a fault: it does not look at dirty logging, which only the
   * fault path's kvm_mmu_hugepage_adjust() checks (kvm_slot_dirty_track_enabled()).
   */
  recovering?: boolean
}

/** The largest leaf KVM may use to map `gfn`. */
export function maxMappingLevel(q: LevelQuery): MappingLevel {
  const { slot, gfn } = q
  // 6.18: guest_memfd has no huge folios for SW_PROTECTED VMs (kvm_gmem_max_mapping_level() is 4K).
  if (q.fromGmem) return '4K'
  // KVM Userfault (x86 v2: fault->max_level = PG_LEVEL_4K; v3: kvm_mmu_hugepage_adjust() returns early):
  // only 4 KiB mappings while the flag is set, for normal and guest_memfd memory alike.
  if ((slot.flags & KVM_MEM_USERFAULT) !== 0) return '4K'
  // kvm_mmu_hugepage_adjust(): dirty logging forces 4 KiB mappings.
  if (!q.recovering && (slot.flags & KVM_MEM_LOG_DIRTY_PAGES) !== 0) return '4K'
  // lpage_info's disallow_lpage: a 2 MiB region that sticks out of the slot, or a slot whose gfn and hva
  // disagree modulo 2 MiB (every region then is disallowed).
  const base = hugeBase(gfn)
  if (base < slot.baseGfn || base + PAGES_PER_2M > slot.baseGfn + slot.npages) return '4K'
  const hva = slot.userspaceAddr + (BigInt(gfn - slot.baseGfn) << BigInt(PAGE_SHIFT))
  if (((slot.userspaceAddr >> BigInt(PAGE_SHIFT)) - BigInt(slot.baseGfn)) % BigInt(PAGES_PER_2M) !== 0n) return '4K'
  // KVM_LPAGE_MIXED_FLAG: the region's memory attributes are not all the same.
  const attrs = q.attributes.get(gfn) & KVM_MEMORY_ATTRIBUTE_PRIVATE
  if (!q.attributes.rangeHas(base, base + PAGES_PER_2M, KVM_MEMORY_ATTRIBUTE_PRIVATE, attrs)) return '4K'
  // host_pfn_mapping_level(): the host must map the page with a 2 MiB page itself.
  return q.host.hugeMapped(hva) ? '2M' : '4K'
}
