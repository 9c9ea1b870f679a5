// Which ranges of the emulated process a userfaultfd covers, and in which modes: in the kernel each VMA's
// vm_userfaultfd_ctx and VM_UFFD_* flags, VMAs being split at a registration's edges and merged again
// when neighbours agree. Here: sorted, disjoint segments {start, end, uffd, mode}, adjacent segments with
// the same uffd and mode merged (one VMA for UFFDIO_COPY's "the range lies in one VMA" check).
// UFFDIO_REGISTER and UFFDIO_UNREGISTER's rules (fs/userfaultfd.c) are here too; a munmap() drops the
// segments of the mapping (AddressSpace.unmap()).

import type { ErrnoName } from '../../harness/uapi/errno.ts'
import {
  _UFFDIO_CONTINUE, _UFFDIO_WRITEPROTECT, UFFD_API_RANGE_IOCTLS, UFFD_API_REGISTER_MODES,
  UFFDIO_REGISTER_MODE_MINOR, UFFDIO_REGISTER_MODE_MISSING, UFFDIO_REGISTER_MODE_WP,
} from '../../harness/uapi/userfaultfd.ts'
import { MMAP_MIN_ADDR, TASK_SIZE_MAX, type AddressSpace, type Vma } from './address-space.ts'
import { PAGE_SIZE } from './page-store.ts'
import type { Userfaultfd } from './userfaultfd.ts'

const PAGE = BigInt(PAGE_SIZE)

export interface UffdSegment {
  readonly start: bigint
  readonly end: bigint
  readonly uffd: Userfaultfd
  /** UFFDIO_REGISTER_MODE_* bits (VM_UFFD_MISSING, _WP, _MINOR). */
  readonly mode: number
}

export class UffdRegistrations {
  private segs: UffdSegment[] = []

  get isEmpty(): boolean {
    return this.segs.length === 0
  }

  /** The segment holding `addr`, if any. */
  find(addr: bigint): UffdSegment | undefined {
    let lo = 0
    let hi = this.segs.length - 1
    while (lo <= hi) {
      const mid = (lo + hi) >> 1
      const s = this.segs[mid]!
      if (addr < s.start) hi = mid - 1
      else if (addr >= s.end) lo = mid + 1
      else return s
    }
    return undefined
  }

  /** The segments overlapping [start, end), in address order. */
  overlapping(start: bigint, end: bigint): UffdSegment[] {
    return this.segs.filter((s) => s.start < end && s.end > start)
  }

  /** Registers [start, end) with `uffd` in `mode`, replacing what was there. */
  set(start: bigint, end: bigint, uffd: Userfaultfd, mode: number): void {
    this.clear(start, end)
    this.segs.push({ start, end, uffd, mode })
    this.segs.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0))
    // vma_merge(): neighbours with the same context and flags become one.
    const merged: UffdSegment[] = []
    for (const s of this.segs) {
      const prev = merged[merged.length - 1]
      if (prev !== undefined && prev.end === s.start && prev.uffd === s.uffd && prev.mode === s.mode) {
        merged[merged.length - 1] = { ...prev, end: s.end }
      } else {
        merged.push(s)
      }
    }
    this.segs = merged
  }

  /** Unregisters [start, end), whoever registered it. */
  clear(start: bigint, end: bigint): void {
    const out: UffdSegment[] = []
    for (const s of this.segs) {
      if (s.end <= start || s.start >= end) {
        out.push(s)
        continue
      }
      if (s.start < start) out.push({ ...s, end: start })
      if (s.end > end) out.push({ ...s, start: end })
    }
    this.segs = out
  }

  /** Every segment of `uffd` goes (userfaultfd_release()). */
  clearUffd(uffd: Userfaultfd): void {
    this.segs = this.segs.filter((s) => s.uffd !== uffd)
  }
}

/**
 * validate_range(): start not page aligned, len not page aligned or 0, start below mmap_min_addr or at
 * or past TASK_SIZE, or start + len past TASK_SIZE -> EINVAL.
 */
export function validateRange(start: bigint, len: bigint): ErrnoName | undefined {
  if (start % PAGE !== 0n) return 'EINVAL'
  if (len % PAGE !== 0n || len === 0n) return 'EINVAL'
  if (start < MMAP_MIN_ADDR || start >= TASK_SIZE_MAX) return 'EINVAL'
  if (len > TASK_SIZE_MAX - start) return 'EINVAL'
  return undefined
}

/**
 * vma_can_userfault(): MINOR only on shmem (and hugetlbfs, which the emulator has not); otherwise
 * anonymous memory and shmem. A guest_memfd mapping cannot be registered (no vm_uffd_ops in 6.18).
 */
function canUserfault(vma: Vma, mode: number): boolean {
  if ((mode & UFFDIO_REGISTER_MODE_MINOR) !== 0 && vma.object.kind !== 'shmem') return false
  return vma.object.kind === 'anonymous' || vma.object.kind === 'shmem'
}

/** The mapped pieces of [start, end) in address order. */
function mapped(space: AddressSpace, start: bigint, end: bigint): { from: bigint; to: bigint; vma: Vma }[] {
  const out: { from: bigint; to: bigint; vma: Vma }[] = []
  for (const p of space.pieces(start, end)) if (p.vma !== undefined) out.push({ from: p.from, to: p.to, vma: p.vma })
  return out
}

/**
 * userfaultfd_register(), in the kernel's order: mode 0 or unknown bits -> EINVAL; validate_range();
 * no mapping in the range -> EINVAL (holes between mappings are allowed); then per mapping in address
 * order: one that cannot take the mode -> EINVAL, one (part) registered by another userfaultfd -> EBUSY.
 * Then every mapped part takes `uffd` and `mode` (a mode registered before is replaced). Returns
 * uffdio_register.ioctls: the range ioctls, WRITEPROTECT only with MODE_WP, CONTINUE only with MODE_MINOR.
 */
export function register(space: AddressSpace, uffd: Userfaultfd, start: bigint, len: bigint, mode: bigint): bigint | ErrnoName {
  if (mode === 0n || (mode & ~BigInt(UFFD_API_REGISTER_MODES)) !== 0n) return 'EINVAL'
  const refused = validateRange(start, len)
  if (refused !== undefined) return refused
  const m = Number(mode)
  const pieces = mapped(space, start, start + len)
  if (pieces.length === 0) return 'EINVAL'
  for (const p of pieces) {
    if (!canUserfault(p.vma, m)) return 'EINVAL'
    if (space.uffd.overlapping(p.from, p.to).some((s) => s.uffd !== uffd)) return 'EBUSY'
  }
  for (const p of pieces) space.uffd.set(p.from, p.to, uffd, m)
  let ioctls = UFFD_API_RANGE_IOCTLS
  if ((m & UFFDIO_REGISTER_MODE_WP) === 0) ioctls &= ~(1n << BigInt(_UFFDIO_WRITEPROTECT))
  if ((m & UFFDIO_REGISTER_MODE_MINOR) === 0) ioctls &= ~(1n << BigInt(_UFFDIO_CONTINUE))
  return ioctls
}

/**
 * userfaultfd_unregister(): validate_range(); no mapping in the range -> EINVAL; a mapping that cannot
 * be registered at all, or a part registered by another userfaultfd -> EINVAL. Then each registered
 * part is cleared; a part registered MISSING has its waiters woken first ("so they will not hang
 * permanently"), a MINOR- or WP-only part does not (userfaultfd_missing(); measured: a vCPU blocked on a
 * MINOR fault stays blocked after UFFDIO_UNREGISTER until UFFDIO_WAKE).
 */
export function unregister(space: AddressSpace, uffd: Userfaultfd, start: bigint, len: bigint): ErrnoName | undefined {
  const refused = validateRange(start, len)
  if (refused !== undefined) return refused
  const end = start + len
  const pieces = mapped(space, start, end)
  if (pieces.length === 0) return 'EINVAL'
  for (const p of pieces) {
    if (!canUserfault(p.vma, 0)) return 'EINVAL'
    if (space.uffd.overlapping(p.from, p.to).some((s) => s.uffd !== uffd)) return 'EINVAL'
  }
  for (const s of space.uffd.overlapping(start, end)) {
    const from = s.start > start ? s.start : start
    const to = s.end < end ? s.end : end
    if ((s.mode & UFFDIO_REGISTER_MODE_MISSING) !== 0) uffd.wake(from, to - from)
  }
  space.uffd.clear(start, end)
  return undefined
}
