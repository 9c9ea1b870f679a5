// UFFDIO_COPY, UFFDIO_ZEROPAGE and UFFDIO_CONTINUE: fs/userfaultfd.c's argument checks, then
// mm/userfaultfd.c's mfill_atomic() page by page. The result is what the ioctl's out field says (bytes
// done) plus the error that stopped it; the caller wakes [dst, dst + done) unless DONTWAKE and fails
// with EAGAIN when the range was done only in part (userfaultfd_copy() and friends).

import type { ErrnoName } from '../../harness/uapi/errno.ts'
import {
  UFFDIO_CONTINUE_MODE_DONTWAKE, UFFDIO_CONTINUE_MODE_WP, UFFDIO_COPY_MODE_DONTWAKE, UFFDIO_COPY_MODE_WP,
  UFFDIO_REGISTER_MODE_WP, UFFDIO_ZEROPAGE_MODE_DONTWAKE,
} from '../../harness/uapi/userfaultfd.ts'
import type { AddressSpace } from './address-space.ts'
import { objectPage } from './host-page-tables.ts'
import { PAGE_SIZE } from './page-store.ts'
import { validateRange } from './uffd-registrations.ts'

const PAGE = BigInt(PAGE_SIZE)

export type MfillOp =
  | { kind: 'copy'; dst: bigint; data: Uint8Array; mode: bigint }
  | { kind: 'zeropage'; dst: bigint; len: bigint; mode: bigint }
  | { kind: 'continue'; dst: bigint; len: bigint; mode: bigint }

/** What mfill_atomic() did: `done` bytes from dst, then `error` if it stopped early. */
export interface MfillResult {
  done: bigint
  error: ErrnoName | undefined
}

/** The mode bits each ioctl accepts; the WP bit, where there is one. */
const MODES = {
  copy: { valid: UFFDIO_COPY_MODE_DONTWAKE | UFFDIO_COPY_MODE_WP, wp: UFFDIO_COPY_MODE_WP, dontwake: UFFDIO_COPY_MODE_DONTWAKE },
  zeropage: { valid: UFFDIO_ZEROPAGE_MODE_DONTWAKE, wp: 0, dontwake: UFFDIO_ZEROPAGE_MODE_DONTWAKE },
  continue: { valid: UFFDIO_CONTINUE_MODE_DONTWAKE | UFFDIO_CONTINUE_MODE_WP, wp: UFFDIO_CONTINUE_MODE_WP, dontwake: UFFDIO_CONTINUE_MODE_DONTWAKE },
} as const

export function dontWake(op: MfillOp): boolean {
  return (op.mode & BigInt(MODES[op.kind].dontwake)) !== 0n
}

function lengthOf(op: MfillOp): bigint {
  return op.kind === 'copy' ? BigInt(op.data.length) : op.len
}

/**
 * userfaultfd_copy() / _zeropage() / _continue() up to mfill_atomic(): for COPY the source range is
 * checked first (validate_unaligned_range(): its length must be whole pages, not 0; the source buffer
 * itself is always valid here), then validate_range() of the destination, then unknown mode bits -> EINVAL.
 */
export function checkMfill(op: MfillOp): ErrnoName | undefined {
  const len = lengthOf(op)
  if (op.kind === 'copy' && (len % PAGE !== 0n || len === 0n)) return 'EINVAL'
  const refused = validateRange(op.dst, len)
  if (refused !== undefined) return refused
  if ((op.mode & ~BigInt(MODES[op.kind].valid)) !== 0n) return 'EINVAL'
  return undefined
}

/**
 * mfill_atomic(): the destination must lie in one registered VMA (uffd_mfill_lock(): no VMA, the range
 * running past it, or a VMA no userfaultfd registered -> ENOENT; any userfaultfd's registration will do,
 * measured); a WP mode on a range not registered for WP -> EINVAL; CONTINUE outside shmem -> EINVAL.
 * Then each page:
 *   COPY     anonymous: a page already mapped -> EEXIST; shmem: a page already in the page cache -> EEXIST
 *            (shmem_add_to_page_cache()). The data lands in the page and the PTE is installed.
 *   ZEROPAGE the same checks; the zero page (anonymous) or a zeroed page-cache page (shmem).
 *   CONTINUE no page in the page cache -> EFAULT; a PTE already there -> EEXIST; else the PTE.
 * It returns the bytes done, or the error when none were.
 */
export function mfill(space: AddressSpace, op: MfillOp): MfillResult {
  const len = lengthOf(op)
  const vma = space.find(op.dst)
  const seg = space.uffd.find(op.dst)
  const end = op.dst + len
  if (vma === undefined || seg === undefined || end > vma.end || end > seg.end) return { done: 0n, error: 'ENOENT' }
  if ((op.mode & BigInt(MODES[op.kind].wp)) !== 0n && (seg.mode & UFFDIO_REGISTER_MODE_WP) === 0) return { done: 0n, error: 'EINVAL' }
  const object = vma.object
  if (object.kind !== 'anonymous' && object.kind !== 'shmem') return { done: 0n, error: 'EINVAL' }
  if (op.kind === 'continue' && object.kind !== 'shmem') return { done: 0n, error: 'EINVAL' }
  let done = 0n
  for (; done < len; done += PAGE) {
    const page = op.dst + done
    const index = objectPage(vma, page)
    const offset = vma.offset + (page - vma.start)
    // Past the end of the file: shmem_mfill_atomic_pte() -> EFAULT, shmem_get_folio(SGP_NOALLOC) -> EINVAL.
    if (object.firstRefusedPage(index, index + 1) !== undefined) return stop(done, op.kind === 'continue' ? 'EINVAL' : 'EFAULT')
    if (op.kind === 'continue') {
      if (!space.ptes.inPageCache(object, index)) return stop(done, 'EFAULT')
      if (space.ptes.hasPte(page)) return stop(done, 'EEXIST')
      space.ptes.mapPte(page)
      continue
    }
    const taken = object.kind === 'anonymous' ? space.ptes.state(vma, page) !== 'missing' : space.ptes.inPageCache(object, index)
    if (taken) return stop(done, 'EEXIST')
    if (op.kind === 'copy') object.pages.write(offset, op.data.subarray(Number(done), Number(done + PAGE)))
    space.ptes.map(vma, page, page + PAGE)
  }
  return { done, error: undefined }
}

function stop(done: bigint, error: ErrnoName): MfillResult {
  return { done, error }
}
