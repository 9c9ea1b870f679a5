// The KVM Userfault series (James Houghton; NOT upstream) as the emulator models it, on top of upstream
// 6.18 x86: the rules that differ between the posted versions, as data, and the checks the memslot
// ioctls and the page-fault path call. Source: shared/reference/upstream-selftests.md §F.2, §F.3, §F.6
// (and §D.3 for guest_memfd slots). Rules marked [inferred] were reasoned out, not read in the series.
//
// Every rule of §F the emulator implements, the version(s) it comes from, and where it is:
//
//  #  rule (section)                                                   v2 (Jan 2025)          v3 (Jun 2025)          code
//  1  KVM_MEM_USERFAULT (1 << 3) is a valid memslot flag (F.2)        kvm_has_userfault()    KVM_GENERIC_PAGE_FAULT memslots.ts validMemoryRegionFlags()
//  2  the legacy KVM_SET_USER_MEMORY_REGION refuses it, EINVAL        v1-flags only          same                   memslots.ts checkIoctlFlags()
//     (F.2, F.6)
//  3  KVM_CHECK_EXTENSION(KVM_CAP_USERFAULT) is 1 (F.2)               cap 239                cap 243                caps.ts checkExtension()
//  4  KVM_ENABLE_CAP(KVM_CAP_USERFAULT) is EINVAL (F.6)               yes                    yes                    vm.ts enableCap()
//  5  userfault_bitmap is checked only with the flag: tagged, or      yes                    yes                    checkUserfaultBitmap()
//     !access_ok(ptr, ceil(npages / 64) * 8) -> EINVAL; NULL and
//     any alignment pass (F.3)
//  6  the pointer is taken from the request when the slot is built   yes                    yes                    memslots.ts prepareMemoryRegion()
//     with the flag; an unchanged gpa + flags returns 0 first and
//     keeps the old one (F.3, [inferred])
//  7  what may change on a guest_memfd slot (D.3)                     FLAGS_ONLY with        anything but a MOVE    checkGmemSlotChange()
//                                                                     old ^ new == USERFAULT
//  8  a vCPU fault on an unmapped gfn whose bit is set: KVM_RUN       x86 kvm_mmu_prepare_   kvm_do_userfault()     page-fault.ts pageFault(),
//     -1/EFAULT, KVM_EXIT_MEMORY_FAULT, flags USERFAULT (| PRIVATE    userfault_exit()       (gpa, size as v2:      userfaultExitFlags()
//     for a private access), gpa gfn << 12, size 4096 (F.3)                                  [inferred])
//  9  a gfn KVM has mapped does not exit until the flag goes off and  yes                    yes                    page-fault.ts (stage-2 first)
//     on again (F.3)
// 10  enabling the flag (FLAGS_ONLY 0 -> 1) zaps the slot (F.3)       kvm_mmu_slot_apply_    kvm_arch_userfault_    memslot-mmu.ts applySlotFlags()
//                                                                     flags() flush          enabled()
// 11  while the flag is set only 4 KiB mappings, normal and           max_level = 4K         hugepage_adjust bails  mapping-level.ts maxMappingLevel()
//     guest_memfd memory alike (F.3)
// 12  disabling it recovers huge mappings on x86, even with dirty     yes                    yes                    memslot-mmu.ts applySlotFlags()
//     logging still on; whether the recovery then respects dirty
//     logging was NOT verified (F.3)
// 13  dirty-logging work only when LOG_DIRTY_PAGES itself toggles     yes                    yes                    memslot-mmu.ts applySlotFlags()
//     (F.3)
// 14  a NULL bitmap with the flag, at fault time (F.3)                WARN_ON_ONCE, the page no special case: the   checkUserfault()
//                                                                     is not userfault       read fails, bare EFAULT
// 15  a bitmap that cannot be read at fault time: KVM_RUN fails with  x86: copy_from_user()  __get_user() fails    checkUserfault()
//     EFAULT and no exit information (F.3)                            fails
// 16  KVM_PRE_FAULT_MEMORY on a page whose bit is set: the fault      [inferred]             [inferred]             pre-fault.ts preFaultStep()
//     path's -EFAULT, also where stage-2 maps the page (its fault
//     never takes the fast path with A/D bits enabled)
//
// Not modelled: arm64 (v2 reports a USERFAULT exit for an unreadable bitmap, and disabling the flag does
// nothing there), the RFC's memory-attribute design (§F.1), and v1 (no bitmap validation at all).

import type { ErrnoName } from '../../harness/uapi/errno.ts'
import { KVM_MEM_GUEST_MEMFD, KVM_MEMORY_EXIT_FLAG_PRIVATE } from '../../harness/uapi/kvm.ts'
import { KVM_MEM_USERFAULT, KVM_MEMORY_EXIT_FLAG_USERFAULT, USERFAULT_SERIES } from '../../harness/uapi/series.ts'
import { accessOk, isFault, untaggedAddr, type Fault } from './address-space.ts'
import { PAGE_SHIFT } from './page-store.ts'
import type { KernelProfile, ModelledSeries } from './profiles.ts'
import { bitmapBytes } from './userfault-bitmap.ts'

export { KVM_MEM_USERFAULT }

/** What one version of the series does where the versions differ (x86). */
export interface UserfaultRules {
  readonly series: ModelledSeries
  /** KVM_CAP_USERFAULT's number (§0.1): collides with later upstream caps, so tests probe instead. */
  readonly cap: number
  /**
   * What may change on an existing guest_memfd slot: v2 patch 03/13 allows a FLAGS_ONLY change whose only
   * changed flag is USERFAULT; v3 (after Sean's review, lore aBqjV40pb-s9gvsz@google.com) drops the
   * immutability and refuses only a MOVE.
   */
  readonly gmemSlotChange: 'userfault-toggle-only' | 'no-move'
  /** A NULL userfault_bitmap with the flag set, when a fault reads it. */
  readonly nullBitmap: 'warn-not-userfault' | 'read'
}

export const USERFAULT_RULES: Readonly<Record<ModelledSeries, UserfaultRules>> = {
  v2: { series: 'v2', cap: USERFAULT_SERIES.v2.capUserfault, gmemSlotChange: 'userfault-toggle-only', nullBitmap: 'warn-not-userfault' },
  v3: { series: 'v3', cap: USERFAULT_SERIES.v3.capUserfault, gmemSlotChange: 'no-move', nullBitmap: 'read' },
}

/** The series rules of `profile`, or null for a kernel without KVM Userfault. */
export function userfaultRules(profile: KernelProfile): UserfaultRules | null {
  return profile.userfault === null ? null : USERFAULT_RULES[profile.userfault.series]
}

/** The request fields the bitmap check reads. */
interface BitmapRequest {
  flags: number
  memorySize: bigint
  userfaultBitmap: bigint
}

/**
 * kvm_set_memory_region() (v2/v3): only with KVM_MEM_USERFAULT in the flags, a userfault_bitmap that is
 * tagged or fails access_ok() over ceil(npages / 64) longs -> EINVAL. No alignment is asked, and NULL
 * passes (access_ok() of a low user range), which the series' guest_memfd toggle test relies on.
 */
export function checkUserfaultBitmap(rules: UserfaultRules | null, r: BitmapRequest): ErrnoName | undefined {
  if (rules === null || (r.flags & KVM_MEM_USERFAULT) === 0) return undefined
  const npages = Number(r.memorySize >> BigInt(PAGE_SHIFT))
  const bytes = BigInt(bitmapBytes(npages))
  if (r.userfaultBitmap !== untaggedAddr(r.userfaultBitmap) || !accessOk(r.userfaultBitmap, bytes)) return 'EINVAL'
  return undefined
}

/**
 * kvm_set_memory_region(), modifying a slot whose new flags have KVM_MEM_GUEST_MEMFD: upstream refuses
 * every modification ("private memslots are immutable, they can only be deleted") -> EINVAL, before even
 * "nothing to change". `kind` is what the change would be.
 */
export function checkGmemSlotChange(
  rules: UserfaultRules | null,
  oldFlags: number,
  newFlags: number,
  kind: 'move' | 'flags_only' | 'none',
): ErrnoName | undefined {
  if ((newFlags & KVM_MEM_GUEST_MEMFD) === 0) return undefined
  if (rules === null) return 'EINVAL'
  if (rules.gmemSlotChange === 'userfault-toggle-only') {
    // v2: a FLAGS_ONLY change that toggles exactly KVM_MEM_USERFAULT, nothing else (a re-set that changes
    // nothing is still EINVAL, as upstream).
    return kind === 'flags_only' && (oldFlags ^ newFlags) === KVM_MEM_USERFAULT ? undefined : 'EINVAL'
  }
  // v3: moving a guest_memfd slot -> EINVAL. [inferred] Adding KVM_MEM_GUEST_MEMFD to a slot that has no
  // binding -> EINVAL: kvm_gmem_bind() runs on CREATE only, so the flag cannot be gained later.
  if (kind === 'move') return 'EINVAL'
  if ((oldFlags & KVM_MEM_GUEST_MEMFD) === 0) return 'EINVAL'
  return undefined
}

/** What reading a gfn's bit at fault time gives. */
export type UserfaultCheck =
  /** Not userfault: the fault goes on. */
  | 'none'
  /** The bit is set: KVM_EXIT_MEMORY_FAULT with KVM_MEMORY_EXIT_FLAG_USERFAULT. */
  | 'exit'
  /** The bitmap could not be read: KVM_RUN fails with EFAULT and no exit information. */
  | 'efault'

/** The slot fields the fault-time check reads. */
interface UserfaultSlot {
  readonly baseGfn: number
  readonly flags: number
  readonly userfaultBitmap: bigint | null
}

/**
 * x86 v2 kvm_gfn_userfault() / v3 kvm_do_userfault(): for a fault on `gfn` that KVM has not mapped, reads
 * the bit of page gfn - base_gfn (bit n % 64 of word n / 64) from the user's bitmap. `read` reads user
 * memory as copy_from_user()/__get_user() would; `warn` records a kernel WARN.
 */
export function checkUserfault(
  rules: UserfaultRules | null,
  slot: UserfaultSlot,
  gfn: number,
  read: (addr: bigint, length: number) => Uint8Array | Fault,
  warn: (what: string) => void,
): UserfaultCheck {
  if (rules === null || (slot.flags & KVM_MEM_USERFAULT) === 0) return 'none'
  const bitmap = slot.userfaultBitmap ?? 0n
  if (bitmap === 0n && rules.nullBitmap === 'warn-not-userfault') {
    // v2: WARN_ON_ONCE(!slot->userfault_bitmap), and the page is treated as not userfault.
    warn('WARN_ON_ONCE(!memslot->userfault_bitmap) in kvm_gfn_userfault()')
    return 'none'
  }
  const n = gfn - slot.baseGfn
  const word = read(bitmap + BigInt(n >> 6) * 8n, 8)
  // v2 x86: copy_from_user() fails -> a bare -EFAULT; v3: __get_user() fails -> kvm_do_userfault() returns
  // true without preparing the exit -> a bare -EFAULT (v3 05/15, 06/15).
  if (isFault(word)) return 'efault'
  const bit = n & 63
  return (word[bit >> 3]! >> (bit & 7)) & 1 ? 'exit' : 'none'
}

/** kvm_run.memory_fault.flags of a userfault exit: USERFAULT, plus PRIVATE for a private access. */
export function userfaultExitFlags(isPrivate: boolean): bigint {
  return KVM_MEMORY_EXIT_FLAG_USERFAULT | (isPrivate ? KVM_MEMORY_EXIT_FLAG_PRIVATE : 0n)
}
