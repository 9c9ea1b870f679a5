// A VM (struct kvm): its memslots, memory attributes, enabled capabilities and MMU settings, and the VM
// ioctls over them. Rules live in the files named after each object; this file routes a VM's calls to
// them and holds the VM-wide state.

import { KVM_CAP_DISABLE_QUIRKS2, KVM_X86_QUIRK_SLOT_ZAP_ALL } from '../../harness/uapi/kvm.ts'
import type { ErrnoName } from '../../harness/uapi/errno.ts'
import { checkExtension } from './caps.ts'
import { getDirtyLog, markDirty } from './dirty-log.ts'
import type { OpenFile } from './fd-table.ts'
import { GuestMemfdFile, checkCreateGuestMemfd, kvmGmemBind } from './guest-memfd.ts'
import {
  MemoryAttributeMap,
  checkSetMemoryAttributes,
  type MemoryAttributesRequest,
} from './memory-attributes.ts'
import { MemslotTable } from './memslot-table.ts'
import {
  freeMemslot,
  memslotRules,
  setMemoryRegion,
  type MemoryRegion,
  type MemslotIoctl,
  type MemslotRules,
} from './memslots.ts'
import type { KernelProfile } from './profiles.ts'
import { checkCreateVcpu } from './vcpu.ts'

/** x86 KVM_MIN_ALLOC_MMU_PAGES */
export const KVM_MIN_ALLOC_MMU_PAGES = 64n
/** x86 KVM_MEMSLOT_PAGES_TO_MMU_PAGES_RATIO: the default MMU page budget is 1 per 50 memslot pages. */
export const KVM_MEMSLOT_PAGES_TO_MMU_PAGES_RATIO = 50n

/** kvm_dev_ioctl_create_vm() -> x86 kvm_arch_init_vm(): a type KVM_CAP_VM_TYPES does not list -> EINVAL. */
export function checkCreateVm(profile: KernelProfile, type: number): ErrnoName | undefined {
  return profile.vmTypes.includes(type) ? undefined : 'EINVAL'
}

export class VmState {
  readonly rules: MemslotRules
  readonly memslots: MemslotTable
  readonly attributes = new MemoryAttributeMap()
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
  ) {
    this.rules = memslotRules(profile, type)
    this.memslots = new MemslotTable(this.rules.nrAsIds)
  }

  /** KVM_CHECK_EXTENSION on the VM fd. */
  checkExtension(cap: number): number {
    return checkExtension(this.profile, this.type, cap)
  }

  /**
   * kvm_vm_ioctl_enable_cap_generic() -> x86 kvm_vm_ioctl_enable_cap(): flags != 0 -> EINVAL;
   * KVM_CAP_DISABLE_QUIRKS2 with a quirk outside kvm_caps.supported_quirks -> EINVAL, else the quirks
   * are disabled from now on; a capability this model does not enable -> EINVAL.
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

  /** Whether deleting or moving a slot zaps every root (the quirk) or only the slot's pages. */
  get slotZapAll(): boolean {
    return this.hasQuirk(KVM_X86_QUIRK_SLOT_ZAP_ALL)
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

  /** KVM_SET_USER_MEMORY_REGION[2]; `lookupFd` is the process's fd table (for guest_memfd). */
  setMemoryRegion(
    ioctl: MemslotIoctl,
    region: MemoryRegion,
    lookupFd: (fd: number) => OpenFile | 'EBADF',
  ): ErrnoName | undefined {
    const before = { slots: this.memslots.size, pages: this.memslots.totalPages }
    const refused = setMemoryRegion(this.memslots, this.rules, ioctl, region, {
      bind: (slot, fd, offset) => kvmGmemBind(lookupFd(fd), this, slot, offset),
    })
    // kvm_arch_commit_memory_region(): a CREATE or DELETE recomputes the default MMU page budget.
    if (before.slots !== this.memslots.size || before.pages !== this.memslots.totalPages) {
      const pages = BigInt(this.memslots.totalPages) / KVM_MEMSLOT_PAGES_TO_MMU_PAGES_RATIO
      this.defaultMmuPages = pages > KVM_MIN_ALLOC_MMU_PAGES ? pages : KVM_MIN_ALLOC_MMU_PAGES
    }
    return refused
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

  /** KVM_SET_MEMORY_ATTRIBUTES */
  setMemoryAttributes(request: MemoryAttributesRequest): ErrnoName | undefined {
    const range = checkSetMemoryAttributes(this.profile, this.type, request)
    if (typeof range === 'string') return range
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
    for (const slot of this.memslots.clear()) freeMemslot(slot)
  }
}
