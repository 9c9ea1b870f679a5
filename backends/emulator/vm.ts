// A VM (struct kvm): its memslots, memory attributes, stage-2 mappings, enabled capabilities and MMU
// settings, and the VM ioctls over them. Rules live in the files named after each object; this file
// routes a VM's calls to them and holds the VM-wide state.

import { KVM_CAP_DISABLE_QUIRKS2, KVM_X86_QUIRK_SLOT_ZAP_ALL } from '../../harness/uapi/kvm.ts'
import type { ErrnoName } from '../../harness/uapi/errno.ts'
import type { AddressSpace } from './address-space.ts'
import { checkExtension } from './caps.ts'
import { getDirtyLog, markDirty } from './dirty-log.ts'
import type { OpenFile } from './fd-table.ts'
import { GuestMemfdFile, checkCreateGuestMemfd, kvmGmemBind } from './guest-memfd.ts'
import {
  MemoryAttributeMap,
  checkSetMemoryAttributes,
  type MemoryAttributesRequest,
} from './memory-attributes.ts'
import { applySlotFlags, flushMemslot } from './memslot-mmu.ts'
import { MemslotTable } from './memslot-table.ts'
import { PAGE_SIZE } from './page-store.ts'
import {
  commitMemoryRegion,
  freeMemslot,
  memslotRules,
  prepareMemoryRegion,
  type MemoryRegion,
  type MemslotIoctl,
  type MemslotRules,
  type MemslotUpdate,
} from './memslots.ts'
import type { KernelProfile } from './profiles.ts'
import { Stage2 } from './stage2.ts'
import { userfaultRules, type UserfaultRules } from './userfault.ts'
import { checkCreateVcpu } from './vcpu.ts'

/** x86 KVM_MIN_ALLOC_MMU_PAGES */
export const KVM_MIN_ALLOC_MMU_PAGES = 64n
/** x86 KVM_MEMSLOT_PAGES_TO_MMU_PAGES_RATIO: the default MMU page budget is 1 per 50 memslot pages. */
export const KVM_MEMSLOT_PAGES_TO_MMU_PAGES_RATIO = 50n

/** kvm_dev_ioctl_create_vm() -> x86 kvm_arch_init_vm(): a type KVM_CAP_VM_TYPES does not list -> EINVAL. */
export function checkCreateVm(profile: KernelProfile, type: number): ErrnoName | undefined {
  return profile.vmTypes.includes(type) ? undefined : 'EINVAL'
}

/** A test's hold on the next memslot invalidation (emulator self-tests, index.ts holdMemslotInvalidation()). */
interface InvalidationHold {
  reached(): void
  readonly released: Promise<void>
}

export class VmState {
  readonly rules: MemslotRules
  readonly memslots: MemslotTable
  readonly attributes = new MemoryAttributeMap()
  /** What KVM has mapped of the guest's memory (stage2.ts). */
  readonly stage2 = new Stage2()
  /** The KVM Userfault series this kernel has, or null. */
  readonly userfault: UserfaultRules | null
  /** Kernel warnings the VM's calls raised (WARN_ON_ONCE), each once. */
  readonly warnings: string[] = []
  private readonly holds: InvalidationHold[] = []
  /** kvm->arch.disabled_quirks */
  disabledQuirks = 0
  /** KVM_SET_NR_MMU_PAGES's last value (null until set). */
  nrMmuPages: bigint | null = null
  /** The MMU page budget kvm_arch_commit_memory_region() computes on each CREATE and DELETE; 0 before. */
  private defaultMmuPages = 0n
  /** The ids of the VM's vCPUs (kvm->vcpu_array): a vCPU lives until the VM is destroyed. */
  readonly vcpuIds = new Set<number>()

  constructor(
    readonly profile: KernelProfile,
    readonly type: number,
    /** The host process's memory: memslots' userspace_addr and KVM Userfault bitmaps point into it. */
    readonly host: AddressSpace,
  ) {
    this.rules = memslotRules(profile, type)
    this.memslots = new MemslotTable(this.rules.nrAsIds)
    this.userfault = userfaultRules(profile)
    this.unregisterNotifier = host.onInvalidate((start, end) => this.invalidateHva(start, end))
  }

  /** kvm_init_mmu_notifier()'s registration, undone when the VM is destroyed. */
  private readonly unregisterNotifier: () => void

  /**
   * kvm_mmu_notifier_invalidate_range_start(): the host pages of [start, end) went away (munmap,
   * MADV_DONTNEED, a punched shmem hole), so every gfn whose userspace_addr lies there is zapped and
   * faults again (rechecking, among others, KVM Userfault's bitmap).
   */
  private invalidateHva(start: bigint, end: bigint): void {
    const page = BigInt(PAGE_SIZE)
    for (const slot of this.memslots.all()) {
      const slotEnd = slot.userspaceAddr + BigInt(slot.npages) * page
      const from = start > slot.userspaceAddr ? start : slot.userspaceAddr
      const to = end < slotEnd ? end : slotEnd
      if (from >= to) continue
      const first = slot.baseGfn + Number((from - slot.userspaceAddr) / page)
      const last = slot.baseGfn + Number((to - slot.userspaceAddr + page - 1n) / page)
      this.stage2.zap(first, last)
    }
  }

  /** KVM_CHECK_EXTENSION on the VM fd. */
  checkExtension(cap: number): number {
    return checkExtension(this.profile, this.type, cap)
  }

  /**
   * kvm_vm_ioctl_enable_cap_generic() -> x86 kvm_vm_ioctl_enable_cap(): flags != 0 -> EINVAL;
   * KVM_CAP_DISABLE_QUIRKS2 with a quirk outside kvm_caps.supported_quirks -> EINVAL, else the quirks
   * are disabled from now on; a capability this model does not enable -> EINVAL. That includes the KVM
   * Userfault series' KVM_CAP_USERFAULT (239 in v2, 243 in v3): "Informational only, -EINVAL on direct
   * KVM_ENABLE_CAP" (v1-v3 api.rst).
   */
  enableCap(cap: number, args: readonly bigint[], flags: number): number | ErrnoName {
    if (flags !== 0) return 'EINVAL'
    if (cap === KVM_CAP_DISABLE_QUIRKS2) {
      const quirks = args[0] ?? 0n
      if ((quirks & ~BigInt(this.profile.supportedQuirks)) !== 0n) return 'EINVAL'
      this.disabledQuirks |= Number(quirks)
      return 0
    }
    return 'EINVAL'
  }

  /** kvm_check_has_quirk() */
  hasQuirk(quirk: number): boolean {
    return (this.profile.supportedQuirks & quirk) !== 0 && (this.disabledQuirks & quirk) === 0
  }

  /**
   * kvm->arch.n_max_mmu_pages: KVM_SET_NR_MMU_PAGES's value once set (n_requested_mmu_pages), else the
   * default recomputed when a memslot is created or deleted: nr_memslot_pages / 50, at least
   * KVM_MIN_ALLOC_MMU_PAGES. 0 for a VM that never had a memslot.
   */
  get maxMmuPages(): bigint {
    return this.nrMmuPages ?? this.defaultMmuPages
  }

  /** kvm_vm_ioctl_set_nr_mmu_pages(): fewer than KVM_MIN_ALLOC_MMU_PAGES -> EINVAL. */
  setNrMmuPages(pages: bigint): ErrnoName | undefined {
    if (pages < KVM_MIN_ALLOC_MMU_PAGES) return 'EINVAL'
    this.nrMmuPages = pages
    return undefined
  }

  /** KVM_SET_USER_MEMORY_REGION[2] at once: the checks, then the change (no window between). */
  setMemoryRegion(
    ioctl: MemslotIoctl,
    region: MemoryRegion,
    lookupFd: (fd: number) => OpenFile | 'EBADF',
  ): ErrnoName | undefined {
    const update = this.prepareMemoryRegion(ioctl, region, lookupFd)
    if (typeof update === 'string') return update
    if (update !== null) {
      this.invalidateMemslot(update)
      this.commitMemoryRegion(update)
    }
    return undefined
  }

  /**
   * KVM_SET_USER_MEMORY_REGION[2]'s checks and the new slot (memslots.ts): the errno, null when nothing
   * changes, or the update to invalidate and commit. `lookupFd` is the process's fd table (guest_memfd).
   */
  prepareMemoryRegion(
    ioctl: MemslotIoctl,
    region: MemoryRegion,
    lookupFd: (fd: number) => OpenFile | 'EBADF',
  ): ErrnoName | MemslotUpdate | null {
    return prepareMemoryRegion(this.memslots, this.rules, ioctl, region, {
      bind: (slot, fd, offset) => kvmGmemBind(lookupFd(fd), this, slot, offset),
    })
  }

  /**
   * kvm_set_memslot() -> kvm_invalidate_memslot() for a DELETE or MOVE: the old slot is marked
   * KVM_MEMSLOT_INVALID, so faults on it are retried (KVM_PRE_FAULT_MEMORY gets EAGAIN), and its mappings
   * are zapped. Returns whether the update is one that invalidates.
   */
  invalidateMemslot(update: MemslotUpdate): boolean {
    const { change } = update
    if (change.kind !== 'delete' && change.kind !== 'move') return false
    change.old.invalid = true
    flushMemslot(this, change.old)
    return true
  }

  /** kvm_commit_memory_region(): the slot table takes the update, then the arch's reaction to it. */
  commitMemoryRegion(update: MemslotUpdate): void {
    const { change, slot } = update
    commitMemoryRegion(this.memslots, update)
    if (change.kind === 'flags_only' && slot !== null) applySlotFlags(this, change.old, slot)
    // kvm_arch_commit_memory_region(): a CREATE or DELETE recomputes the default MMU page budget.
    if (change.kind === 'create' || change.kind === 'delete') {
      const pages = BigInt(this.memslots.totalPages) / KVM_MEMSLOT_PAGES_TO_MMU_PAGES_RATIO
      this.defaultMmuPages = pages > KVM_MIN_ALLOC_MMU_PAGES ? pages : KVM_MIN_ALLOC_MMU_PAGES
    }
  }

  /** Arms a hold: the next invalidation waits in its window until released (index.ts). */
  holdNextInvalidation(): { reached: Promise<void>; release(): void } {
    let reached!: () => void
    let release!: () => void
    const reachedP = new Promise<void>((resolve) => (reached = resolve))
    const released = new Promise<void>((resolve) => (release = resolve))
    this.holds.push({ reached, released })
    return { reached: reachedP, release }
  }

  /** The hold armed for this invalidation, if any. */
  takeInvalidationHold(): InvalidationHold | undefined {
    return this.holds.shift()
  }

  /** KVM_X86_QUIRK_SLOT_ZAP_ALL is in effect (memslot-mmu.ts). */
  get slotZapAll(): boolean {
    return this.hasQuirk(KVM_X86_QUIRK_SLOT_ZAP_ALL)
  }

  /** A kernel WARN_ON_ONCE the VM's calls raised, recorded once. */
  warn(what: string): void {
    if (!this.warnings.includes(what)) this.warnings.push(what)
  }

  /** KVM_CREATE_VCPU's rules (vcpu.ts); on success the id is the VM's for good. */
  createVcpu(id: number): ErrnoName | undefined {
    const refused = checkCreateVcpu(this.profile, this.vcpuIds, id)
    if (refused === undefined) this.vcpuIds.add(id)
    return refused
  }

  /** KVM_CREATE_GUEST_MEMFD: the new file (its fd is the caller's to install), or the errno. */
  createGuestMemfd(size: bigint, flags: bigint, ino: bigint): GuestMemfdFile | ErrnoName {
    const refused = checkCreateGuestMemfd(this.profile, this.type, size, flags)
    if (refused !== undefined) return refused
    return new GuestMemfdFile(this, size, flags, ino)
  }

  /**
   * KVM_SET_MEMORY_ATTRIBUTES: kvm_vm_set_mem_attributes() zaps the range first
   * (kvm_arch_pre_set_memory_attributes()), so the next access faults with the new attributes.
   */
  setMemoryAttributes(request: MemoryAttributesRequest): ErrnoName | undefined {
    const range = checkSetMemoryAttributes(this.profile, this.type, request)
    if (typeof range === 'string') return range
    this.stage2.zap(range.start, range.end)
    this.attributes.set(range.start, range.end, request.attributes)
    return undefined
  }

  /** kvm_mem_is_private(): what stage-2 faults will ask. */
  isPrivate(gfn: number): boolean {
    return this.attributes.isPrivate(gfn)
  }

  /** KVM_GET_DIRTY_LOG */
  getDirtyLog(slot: number): Uint8Array | ErrnoName {
    return getDirtyLog(this.memslots, this.rules, slot)
  }

  /** mark_page_dirty(): for the vCPU model's guest writes. */
  markDirty(gfn: number, asId = 0): boolean {
    return markDirty(this.memslots, asId, gfn)
  }

  /** References to struct kvm: the VM fd and every guest_memfd file of the VM (kvm_get_kvm()). */
  private refs = 1

  get destroyed(): boolean {
    return this.refs === 0
  }

  /** kvm_get_kvm() */
  retain(): void {
    this.refs++
  }

  /** kvm_put_kvm(): the last reference destroys the VM. */
  release(): void {
    if (this.refs === 0) return
    if (--this.refs === 0) this.destroy()
  }

  /** kvm_destroy_vm(): frees every memslot (unbinding guest_memfd ranges). */
  private destroy(): void {
    this.unregisterNotifier()
    for (const slot of this.memslots.clear()) freeMemslot(slot)
  }
}
