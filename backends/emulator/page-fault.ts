// The x86 TDP page-fault path as the emulator runs it for every guest access and for KVM_PRE_FAULT_MEMORY:
// kvm_mmu_page_fault() -> kvm_tdp_page_fault() -> kvm_mmu_faultin_pfn(), then the mapping it installs.
//
// A gfn stage-2 already maps is not a fault: the access goes straight to its page, and none of the
// fault-time checks (KVM Userfault's bitmap among them) run. An unmapped gfn goes through the checks in
// the kernel's order and, when they pass, is mapped at the largest level allowed (mapping-level.ts).
// Where the page comes from is decided afresh on every access, so host changes are seen at once.

import { KVM_MEM_GUEST_MEMFD, KVM_MEM_READONLY, KVM_MEMORY_EXIT_FLAG_PRIVATE } from '../../harness/uapi/kvm.ts'
import type { AddressSpace } from './address-space.ts'
import { hostPageFault } from './host-page-fault.ts'
import { maxMappingLevel } from './mapping-level.ts'
import type { Memslot } from './memslots.ts'
import { PAGE_SHIFT, PAGE_SIZE, type PageStore } from './page-store.ts'
import { checkUserfault, userfaultExitFlags } from './userfault.ts'
import type { UffdWait } from './userfaultfd.ts'
import type { VmState } from './vm.ts'

/** Why an access did not reach memory. */
export type MemoryExit =
  /** No memslot, or a write to a READONLY one: KVM emulates the access as MMIO (KVM_EXIT_MMIO). */
  | { kind: 'mmio' }
  /**
   * kvm_prepare_memory_fault_exit(): KVM_RUN fails with EFAULT and KVM_EXIT_MEMORY_FAULT for the page at
   * `gpa` (flags KVM_MEMORY_EXIT_FLAG_PRIVATE when the fault was private, USERFAULT for KVM Userfault).
   */
  | { kind: 'memory_fault'; gpa: bigint; flags: bigint }
  /** KVM_RUN fails with EFAULT and no exit information (a KVM Userfault bitmap that cannot be read). */
  | { kind: 'efault' }
  /**
   * RET_PF_RETRY: fault again later. The gfn's memslot is being deleted or moved (KVM_MEMSLOT_INVALID),
   * or, with `wait`, the host fault went to a userfaultfd (handle_userfault() returns VM_FAULT_RETRY
   * once woken): the vCPU's thread sleeps on `wait` first.
   */
  | { kind: 'retry'; wait?: UffdWait }

/** Where an access's page comes from. */
export type Source =
  /** A guest_memfd file's pages (kvm_gmem_get_pfn()), at byte `offset` of the file. */
  | { kind: 'gmem'; pages: PageStore; offset: bigint }
  /** The memslot's host mapping: userspace_addr + (gpa - base), through the host's page tables. */
  | { kind: 'hva'; hva: bigint; gfn: number }

const PAGE = BigInt(PAGE_SIZE)
const SHIFT = BigInt(PAGE_SHIFT)
const MMIO: MemoryExit = { kind: 'mmio' }

/** kvm_handle_error_pfn(): hva_to_pfn() failed (SIGSEGV/SIGBUS): a memory fault exit for the page, flags 0. */
export function hostFaultExit(gpa: bigint): MemoryExit {
  return { kind: 'memory_fault', gpa: gpa & ~(PAGE - 1n), flags: 0n }
}

/**
 * A host page KVM cannot have: upstream, hostFaultExit(); where KVM reaches guest memory by emulated
 * uaccess (kvm_pvm, profiles.ts guestAccess), the failed copy makes the access MMIO, as measured for a
 * UFFD_USER_MODE_ONLY userfaultfd and a missing host mapping (shared/reference/host-kvm.md).
 */
export function refusedHostPageExit(vm: VmState, gpa: bigint): MemoryExit {
  return vm.profile.guestAccess === 'uaccess' ? MMIO : hostFaultExit(gpa)
}

/**
 * An access (`write` or a read) at `gpa` by a vCPU, or KVM_PRE_FAULT_MEMORY's read fault (`how`): the
 * page's source, faulted into stage-2 first if it was not mapped, or why the access cannot complete.
 * Guest accesses use address space 0 (the vCPU is never in SMM).
 */
export function pageFault(
  vm: VmState, host: AddressSpace, gpa: bigint, write: boolean, how: 'access' | 'pre-fault' = 'access',
): Source | MemoryExit {
  const gfn = Number(gpa >> SHIFT)
  // kvm_mmu_page_fault(): on a VM with private memory (KVM_X86_SW_PROTECTED_VM) a fault is private where
  // the gfn's attributes say so, so kvm_mmu_faultin_pfn()'s private/shared mismatch check never fires
  // here. Other VM types cannot set KVM_MEMORY_ATTRIBUTE_PRIVATE.
  const isPrivate = vm.isPrivate(gfn)
  const slot = vm.memslots.find(0, gfn)
  // kvm_mmu_faultin_pfn(): no memslot -> kvm_handle_noslot_fault(): the access is emulated as MMIO.
  if (slot === undefined) return MMIO
  // __kvm_mmu_faultin_pfn(): a memslot being deleted or moved -> RET_PF_RETRY. (Its mappings were zapped
  // when it was marked invalid, so no access to it is "already mapped".)
  if (slot.invalid === true) return { kind: 'retry' }
  const mapped = vm.stage2.level(gfn) !== null
  // A guest access to a gfn stage-2 maps never faults. KVM_PRE_FAULT_MEMORY always enters the fault
  // handler, and its fault (error code without PRESENT) takes the slow path whenever A/D bits are enabled
  // (page_fault_can_be_fast(): `if (!fault->present) return !kvm_ad_enabled`; they are, by default), so
  // a mapped gfn still goes through kvm_mmu_faultin_pfn() and its checks before RET_PF_SPURIOUS.
  if (!mapped || how === 'pre-fault') {
    // KVM Userfault (v2, v3; rules 8, 9, 14, 15 and 16 of userfault.ts): a set bit exits before KVM looks
    // for the page.
    const uf = checkUserfault(vm.userfault, slot, gfn, (addr, length) => host.read(addr, length), (w) => vm.warn(w))
    if (uf === 'exit') return { kind: 'memory_fault', gpa: BigInt(gfn) << SHIFT, flags: userfaultExitFlags(isPrivate) }
    if (uf === 'efault') return { kind: 'efault' }
  }
  const src = source(slot, gfn, gpa, isPrivate, write)
  if (mapped || src.kind === 'mmio' || src.kind === 'memory_fault') return src
  if (src.kind === 'hva') {
    // hva_to_pfn(): the host page through the process's page tables, faulted in when it has no PTE (a
    // fault that may go to a userfaultfd: host-page-fault.ts). get_user_pages() faults on the page's first
    // byte; an emulated uaccess on the byte itself.
    const realAddress = vm.profile.guestAccess === 'uaccess' ? src.hva : src.hva & ~(PAGE - 1n)
    const f = hostPageFault(host, src.hva, { write, user: false, realAddress })
    if (f.kind === 'signal') return refusedHostPageExit(vm, gpa)
    if (f.kind === 'userfault') return { kind: 'retry', wait: f.wait }
  }
  const fromGmem = src.kind === 'gmem'
  vm.stage2.map(gfn, maxMappingLevel({ slot, gfn, fromGmem, attributes: vm.attributes, host }))
  return src
}

/** __kvm_mmu_faultin_pfn(): where the page of `gpa` in `slot` comes from, in the order KVM decides it. */
function source(slot: Memslot, gfn: number, gpa: bigint, isPrivate: boolean, write: boolean): Source | MemoryExit {
  // A private fault, or any fault on a KVM_MEMSLOT_GMEM_ONLY slot, goes to kvm_mmu_faultin_pfn_gmem(),
  // never to userspace_addr.
  if (isPrivate || slot.gmemOnly === true) {
    // kvm_mmu_faultin_pfn_gmem(): !kvm_slot_has_gmem() -> memory fault exit, EFAULT; kvm_gmem_get_pfn()
    // on a slot whose file was released (kvm_gmem_get_file() == NULL) -> EFAULT, same exit.
    if ((slot.flags & KVM_MEM_GUEST_MEMFD) === 0 || slot.gmem === null) {
      return { kind: 'memory_fault', gpa: BigInt(gfn) << SHIFT, flags: isPrivate ? KVM_MEMORY_EXIT_FLAG_PRIVATE : 0n }
    }
    // kvm_gmem_get_pfn(): file index = gfn - base_gfn + pgoff.
    const index = BigInt(gfn - slot.baseGfn + slot.gmem.pgoff)
    return { kind: 'gmem', pages: slot.gmem.file.pages, offset: (index << SHIFT) + (gpa & (PAGE - 1n)) }
  }
  // __kvm_faultin_pfn() for a write on a READONLY slot -> KVM_PFN_ERR_RO_FAULT -> RET_PF_EMULATE: the
  // write is emulated, finds no device, and exits as MMIO (api.rst, KVM_MEM_READONLY). Nothing is mapped.
  if (write && (slot.flags & KVM_MEM_READONLY) !== 0) return MMIO
  return { kind: 'hva', hva: slot.userspaceAddr + (gpa - (BigInt(slot.baseGfn) << SHIFT)), gfn }
}
