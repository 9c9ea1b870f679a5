// Guest physical memory as a vCPU reaches it: for each guest page, where x86 KVM's page-fault path takes
// the page from (kvm_mmu_faultin_pfn() -> __kvm_mmu_faultin_pfn()), and the access itself.
//
// There is no stage-2 cache: every access looks its gfn up in the memslots as they are now, so a slot the
// host moved or deleted a moment ago is seen at once (KVM zaps the SPTEs before the memslot update
// returns, so a vCPU sees the same). Accesses here never cross a page; the interpreter splits them.

import { KVM_MEM_GUEST_MEMFD, KVM_MEM_READONLY, KVM_MEMORY_EXIT_FLAG_PRIVATE } from '../../harness/uapi/kvm.ts'
import { isFault, type AddressSpace } from './address-space.ts'
import { PAGE_SHIFT, PAGE_SIZE, type PageStore } from './page-store.ts'
import type { VmState } from './vm.ts'

/** Why an access did not reach memory. */
export type MemoryExit =
  /** No memslot, or a write to a READONLY one: KVM emulates the access as MMIO (KVM_EXIT_MMIO). */
  | { kind: 'mmio' }
  /**
   * kvm_mmu_prepare_memory_fault_exit(): KVM_RUN fails with EFAULT and KVM_EXIT_MEMORY_FAULT for the page
   * at `gpa` (flags KVM_MEMORY_EXIT_FLAG_PRIVATE when the fault was private).
   */
  | { kind: 'memory_fault'; gpa: bigint; flags: bigint }

/** Where one access's page comes from. */
type Source =
  /** A guest_memfd file's pages (kvm_gmem_get_pfn()), at byte `offset` of the file. */
  | { kind: 'gmem'; pages: PageStore; offset: bigint }
  /** The memslot's host mapping: userspace_addr + (gpa - base), through the host's page tables. */
  | { kind: 'hva'; hva: bigint; gfn: number }
  | MemoryExit

const PAGE = BigInt(PAGE_SIZE)
const SHIFT = BigInt(PAGE_SHIFT)

/** The bytes left in `gpa`'s page. */
export function pageRemainder(gpa: bigint): number {
  return PAGE_SIZE - Number(gpa & (PAGE - 1n))
}

function countMismatches(bytes: Uint8Array, byte: number): number {
  let n = 0
  for (const b of bytes) if (b !== byte) n++
  return n
}

export class GuestMemory {
  constructor(
    private readonly vm: VmState,
    private readonly host: AddressSpace,
  ) {}

  /**
   * The page source of an access at `gpa`, in the order KVM decides it. Guest accesses use address
   * space 0 (the vCPU is never in SMM).
   */
  private source(gpa: bigint, write: boolean): Source {
    const gfn = Number(gpa >> SHIFT)
    // kvm_mmu_page_fault(): on a VM with private memory (KVM_X86_SW_PROTECTED_VM) a fault is private
    // where the gfn's attributes say so, so kvm_mmu_faultin_pfn()'s private/shared mismatch check never
    // fires here. Other VM types cannot set KVM_MEMORY_ATTRIBUTE_PRIVATE.
    const isPrivate = this.vm.isPrivate(gfn)
    const slot = this.vm.memslots.find(0, gfn)
    // kvm_mmu_faultin_pfn(): no memslot -> kvm_handle_noslot_fault(): the access is emulated as MMIO.
    if (slot === undefined) return { kind: 'mmio' }
    // __kvm_mmu_faultin_pfn(): a private fault, or any fault on a KVM_MEMSLOT_GMEM_ONLY slot, goes to
    // kvm_mmu_faultin_pfn_gmem(), never to userspace_addr.
    if (isPrivate || slot.gmemOnly === true) {
      const memoryFault = { kind: 'memory_fault', gpa: BigInt(gfn) << SHIFT, flags: isPrivate ? KVM_MEMORY_EXIT_FLAG_PRIVATE : 0n } as const
      // kvm_mmu_faultin_pfn_gmem(): !kvm_slot_has_gmem() -> memory fault exit, EFAULT; kvm_gmem_get_pfn()
      // on a slot whose file was released (kvm_gmem_get_file() == NULL) -> EFAULT, same exit.
      if ((slot.flags & KVM_MEM_GUEST_MEMFD) === 0 || slot.gmem === null) return memoryFault
      // kvm_gmem_get_pfn(): file index = gfn - base_gfn + pgoff.
      const index = BigInt(gfn - slot.baseGfn + slot.gmem.pgoff)
      return { kind: 'gmem', pages: slot.gmem.file.pages, offset: (index << SHIFT) + (gpa & (PAGE - 1n)) }
    }
    // __kvm_faultin_pfn() for a write on a READONLY slot -> KVM_PFN_ERR_RO_FAULT -> RET_PF_EMULATE:
    // the write is emulated, finds no device, and exits as MMIO (api.rst, KVM_MEM_READONLY).
    if (write && (slot.flags & KVM_MEM_READONLY) !== 0) return { kind: 'mmio' }
    return { kind: 'hva', hva: slot.userspaceAddr + (gpa - (BigInt(slot.baseGfn) << SHIFT)), gfn }
  }

  /**
   * A host access that raised SIGSEGV or SIGBUS: hva_to_pfn() fails, and kvm_handle_error_pfn()
   * prepares a memory fault exit for the page (KVM_CAP_MEMORY_FAULT_INFO), KVM_RUN returning EFAULT.
   */
  private hostFault(gpa: bigint): MemoryExit {
    return { kind: 'memory_fault', gpa: gpa & ~(PAGE - 1n), flags: 0n }
  }

  /** The guest reads `length` bytes at `gpa` (within one page). */
  read(gpa: bigint, length: number): Uint8Array | MemoryExit {
    const src = this.source(gpa, false)
    switch (src.kind) {
      case 'gmem':
        return src.pages.read(src.offset, length)
      case 'hva': {
        const bytes = this.host.read(src.hva, length)
        return isFault(bytes) ? this.hostFault(gpa) : bytes
      }
      default:
        return src
    }
  }

  /** The guest writes `data` at `gpa` (within one page); a LOG_DIRTY_PAGES slot records the page. */
  write(gpa: bigint, data: Uint8Array): MemoryExit | undefined {
    const src = this.source(gpa, true)
    switch (src.kind) {
      case 'gmem':
        src.pages.write(src.offset, data)
        return undefined
      case 'hva':
        if (isFault(this.host.write(src.hva, data))) return this.hostFault(gpa)
        // mark_page_dirty_in_slot(): guest_memfd slots cannot log dirty pages, so only here.
        this.vm.markDirty(src.gfn)
        return undefined
      default:
        return src
    }
  }

  /** The guest stores `byte` over `length` bytes at `gpa` (within one page), as rep stosb does. */
  fill(gpa: bigint, length: number, byte: number): MemoryExit | undefined {
    const src = this.source(gpa, true)
    switch (src.kind) {
      case 'gmem':
        src.pages.fill(src.offset, BigInt(length), byte)
        return undefined
      case 'hva':
        if (isFault(this.host.fill(src.hva, BigInt(length), byte))) return this.hostFault(gpa)
        this.vm.markDirty(src.gfn)
        return undefined
      default:
        return src
    }
  }

  /** How many of the `length` bytes at `gpa` (within one page) are not `byte`. */
  mismatches(gpa: bigint, length: number, byte: number): number | MemoryExit {
    const src = this.source(gpa, false)
    switch (src.kind) {
      case 'gmem':
        if (src.pages.findMismatch(src.offset, BigInt(length), byte) < 0n) return 0
        return countMismatches(src.pages.read(src.offset, length), byte)
      case 'hva': {
        const first = this.host.findMismatch(src.hva, BigInt(length), byte)
        if (first === -1n) return 0
        const bytes = this.host.read(src.hva, length)
        return isFault(bytes) ? this.hostFault(gpa) : countMismatches(bytes, byte)
      }
      default:
        return src
    }
  }

  /**
   * Whether an instruction fetch or page walk can read the page at `gpa`: undefined if it can, else
   * why not. Fetching from MMIO is an emulation failure for the caller to report.
   */
  fetchable(gpa: bigint): MemoryExit | undefined {
    const bytes = this.read(gpa & ~(PAGE - 1n), 1)
    return bytes instanceof Uint8Array ? undefined : bytes
  }
}
