// Guest physical memory as a vCPU reaches it: each access goes through the stage-2 page-fault path
// (page-fault.ts), which says where its page comes from (or why the access cannot complete) and maps the
// page on first touch, and then the access itself.
//
// Data is never cached: a mapped page is read and written where it lives now, so a slot the host moved
// or deleted a moment ago is seen at once (KVM zaps the SPTEs before the memslot update returns, so a
// vCPU sees the same). Accesses here never cross a page; the interpreter splits them.

import { isFault, type AddressSpace } from './address-space.ts'
import { PAGE_SIZE } from './page-store.ts'
import { pageFault, refusedHostPageExit, type MemoryExit, type Source } from './page-fault.ts'
import type { VmState } from './vm.ts'

export type { MemoryExit }

const PAGE = BigInt(PAGE_SIZE)

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

  /** The page source of an access at `gpa`, faulting it into stage-2 when it is not mapped. */
  private source(gpa: bigint, write: boolean): Source | MemoryExit {
    return pageFault(this.vm, this.host, gpa, write)
  }

  /**
   * A host access that raised SIGSEGV or SIGBUS on a page stage-2 still maps: hva_to_pfn() fails on the
   * next fault, and kvm_handle_error_pfn() prepares a memory fault exit for the page
   * (KVM_CAP_MEMORY_FAULT_INFO), KVM_RUN returning EFAULT.
   */
  private hostFault(gpa: bigint): MemoryExit {
    return refusedHostPageExit(this.vm, gpa)
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
