// madvise(2) (mm/madvise.c) over the emulated address space, for the advice the memory tests use.
// The effects are on contents (which pages read as zero afterwards) and, through the MMU notifiers, on
// KVM's mappings of the pages that went away; page-size effects such as MADV_HUGEPAGE and MADV_COLLAPSE
// on anonymous memory are accepted and change nothing here.

import {
  MADV_COLLAPSE,
  MADV_DONTNEED,
  MADV_HUGEPAGE,
  MADV_NOHUGEPAGE,
  MADV_NORMAL,
  MADV_POPULATE_READ,
  MADV_POPULATE_WRITE,
  MADV_REMOVE,
} from '../../harness/uapi/fs.ts'
import type { ErrnoName } from '../../harness/uapi/errno.ts'
import type { AddressSpace, Vma } from './address-space.ts'
import { isPageAligned, pageAlignUp, pageIndex } from './page-store.ts'
import { U64_MAX } from './u64.ts'

const KNOWN_ADVICE = new Set([
  MADV_NORMAL,
  MADV_DONTNEED,
  MADV_REMOVE,
  MADV_HUGEPAGE,
  MADV_NOHUGEPAGE,
  MADV_POPULATE_READ,
  MADV_POPULATE_WRITE,
  MADV_COLLAPSE,
])

/**
 * do_madvise(): advice the model does not know -> EINVAL (as madvise_behavior_valid() for unknown
 * values); start not page aligned, or start + len wrapping -> EINVAL; len 0 -> nothing. Then each
 * mapping in the range takes the advice; a hole in the range -> ENOMEM after the rest was advised.
 */
export function madvise(space: AddressSpace, start: bigint, length: bigint, advice: number): ErrnoName | undefined {
  if (!KNOWN_ADVICE.has(advice)) return 'EINVAL'
  if (!isPageAligned(start)) return 'EINVAL'
  const len = pageAlignUp(length)
  if (start + len > U64_MAX) return 'EINVAL'
  if (len === 0n) return undefined
  let hole = false
  for (const { from, to, vma } of space.pieces(start, start + len)) {
    if (vma === undefined) {
      hole = true
      continue
    }
    const refused = adviseVma(space, vma, from, to, advice)
    if (refused !== undefined) return refused
  }
  return hole ? 'ENOMEM' : undefined
}

/** One mapping's share of the advice, over its addresses [from, to). */
function adviseVma(space: AddressSpace, vma: Vma, from: bigint, to: bigint, advice: number): ErrnoName | undefined {
  const object = vma.object
  const offset = vma.offset + (from - vma.start)
  const length = to - from
  switch (advice) {
    case MADV_DONTNEED:
      // The page tables go (the MMU notifiers hear it). Private anonymous pages are freed (they read as
      // zero again); a shared file's pages stay in the page cache.
      space.invalidate(from, to)
      if (object.kind === 'anonymous') object.pages.discard(offset, length)
      return undefined
    case MADV_REMOVE:
      // madvise_remove(): needs a shared file mapping (EINVAL otherwise), then vfs_fallocate(PUNCH_HOLE |
      // KEEP_SIZE) on it, which shmem and guest_memfd both honour: the pages leave every mapping of them.
      if (object.kind === 'anonymous') return 'EINVAL'
      space.invalidateObject(object, offset, length)
      object.pages.discard(offset, length)
      space.ptes.dropCache(object, pageIndex(offset), pageIndex(offset + length - 1n) + 1)
      return undefined
    case MADV_POPULATE_READ:
    case MADV_POPULATE_WRITE:
      // madvise_populate(): a fault that would raise SIGBUS comes back as EFAULT.
      return object.firstRefusedPage(pageIndex(offset), pageIndex(offset + length - 1n) + 1) === undefined
        ? undefined
        : 'EFAULT'
    case MADV_COLLAPSE:
      // guest_memfd_test's test_collapse: guest_memfd folios cannot be collapsed -> EINVAL.
      return object.kind === 'guest_memfd' ? 'EINVAL' : undefined
    default:
      return undefined
  }
}
