// memstress: upstream's lib/memstress.c (shared/reference/upstream-selftests.md §B.3), backend-neutral.
//
// One test region at the top of guest physical memory, carved into one slice per vCPU (partitioned) or
// shared whole by every vCPU (overlapped), and the guest pass that touches one u64 at the start of every
// guest page of its slice and then says GUEST_SYNC(1). Here "the top of guest physical memory" is the
// top of the identity map every guest program runs under (harness/guest-program.ts: GVA = GPA below
// 64 GiB), so the region's GVA is its GPA; upstream maps it at GVA 0xc0000000 instead.
//
// Pure: the backends build the VM from what these functions return.

import { BOOT_SLOT_GPA, BOOT_SLOT_SIZE, IDENTITY_MAP_END, type GuestProgram } from '../guest-program.ts'
import { guestSync } from './ucall.ts'

/** DEFAULT_PER_VCPU_MEM_SIZE: what each vCPU demand-pages unless told otherwise. */
export const DEFAULT_PER_VCPU_MEM_SIZE = 1n << 30n
/** MEMSTRESS_MEM_SLOT_INDEX: the test region's memslot (slot 0 is the boot slot). */
export const MEMSTRESS_MEM_SLOT_INDEX = 1
/** The guest page size of x86-64's 4-level mode (memstress_args.guest_page_size). */
export const MEMSTRESS_GUEST_PAGE_SIZE = 4096
/** What memstress_guest_code() stores at the start of each page on a write. */
export const MEMSTRESS_WRITE_VALUE = 0x0123456789abcdefn

/** One vCPU's share (memstress_vcpu_args). */
export interface MemstressVcpuArgs {
  vcpuIdx: number
  /** GPA (= GVA) of the slice's first page. */
  gpa: bigint
  /** Guest pages the pass touches. */
  pages: number
}

export interface MemstressLayout {
  slot: number
  /** The region: [gpa, gpa + size), aligned to the backing's page size. */
  gpa: bigint
  size: bigint
  guestPageSize: number
  vcpuArgs: MemstressVcpuArgs[]
}

export interface MemstressOptions {
  nrVcpus: number
  /** Bytes per vCPU: a multiple of the guest page size and of `backingPageSize`. */
  vcpuMemoryBytes: bigint
  /** The page size of the region's host memory (get_backing_src_pagesz()). */
  backingPageSize: number
  /** true: vCPU i gets the i-th slice; false (-o): every vCPU gets the whole region. */
  partition: boolean
}

/**
 * memstress_create_vm()'s layout. The region ends one guest page below the top, as upstream's
 * `(max_gfn + 1 - guest_num_pages - 1) * guest_page_size`, aligned down to the backing page size.
 * Throws a RangeError for sizes upstream asserts on.
 */
export function memstressLayout(opts: MemstressOptions): MemstressLayout {
  const { nrVcpus, vcpuMemoryBytes, backingPageSize, partition } = opts
  const pageSize = BigInt(MEMSTRESS_GUEST_PAGE_SIZE)
  const backingPage = BigInt(backingPageSize)
  if (!Number.isSafeInteger(nrVcpus) || nrVcpus < 1) throw new RangeError(`${nrVcpus} vCPUs: need at least one`)
  if (vcpuMemoryBytes <= 0n || vcpuMemoryBytes % pageSize !== 0n || vcpuMemoryBytes % backingPage !== 0n) {
    throw new RangeError(
      `${vcpuMemoryBytes} bytes per vCPU: not a positive multiple of the guest page size (${pageSize}) and the backing page size (${backingPage})`,
    )
  }
  const size = vcpuMemoryBytes * BigInt(nrVcpus)
  const top = IDENTITY_MAP_END - pageSize
  const lowest = BOOT_SLOT_GPA + BigInt(BOOT_SLOT_SIZE)
  if (size > top - lowest) {
    throw new RangeError(
      `${nrVcpus} vCPUs × ${vcpuMemoryBytes} bytes do not fit between the boot slot and the top of the ${IDENTITY_MAP_END >> 30n} GiB identity map`,
    )
  }
  const gpa = ((top - size) / backingPage) * backingPage
  const slicePages = Number(vcpuMemoryBytes / pageSize)
  const vcpuArgs = Array.from({ length: nrVcpus }, (_, i): MemstressVcpuArgs =>
    partition
      ? { vcpuIdx: i, gpa: gpa + BigInt(i) * vcpuMemoryBytes, pages: slicePages }
      : { vcpuIdx: i, gpa, pages: slicePages * nrVcpus })
  return { slot: MEMSTRESS_MEM_SLOT_INDEX, gpa, size, guestPageSize: MEMSTRESS_GUEST_PAGE_SIZE, vcpuArgs }
}

/**
 * memstress_guest_code() for one vCPU: one sequential pass over its pages (write_percent 100 or 0),
 * then GUEST_SYNC(1), then the next pass, forever. demand_paging_test stops each vCPU at its first sync.
 */
export function memstressGuestCode(args: MemstressVcpuArgs, write: boolean): GuestProgram {
  return {
    steps: [
      {
        op: 'touch_pages', gva: args.gpa, pages: args.pages, stride: MEMSTRESS_GUEST_PAGE_SIZE, write,
        value: MEMSTRESS_WRITE_VALUE,
      },
      guestSync(1),
      { op: 'jump', to: 0 },
    ],
  }
}
