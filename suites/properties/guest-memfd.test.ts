// Properties of guest_memfd (upstream-selftests.md §D): KVM_CREATE_GUEST_MEMFD succeeds iff the size is
// a non-zero multiple of the page size and every flag is one KVM_CAP_GUEST_MEMFD_FLAGS reports; and
// fallocate(2) on it follows one predicate: len <= 0 is EINVAL (vfs), a mode without KEEP_SIZE is
// EOPNOTSUPP, an unaligned offset or length EINVAL, an allocation past the file's size EINVAL, and a
// punched hole may lie past it. fast-check prints the seed and path of a failure.

import fc from 'fast-check'
import { KvmError } from '../../harness/errors.ts'
import { requireThat } from '../../harness/gating.ts'
import { describe, expect, test } from '../../harness/test.ts'
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE } from '../../harness/uapi/fs.ts'
import { GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, KVM_CAP_GUEST_MEMFD, KVM_CAP_GUEST_MEMFD_FLAGS } from '../../harness/uapi/kvm.ts'

const PAGE = 4096
const NPAGES = 8

const outcome = (call: Promise<unknown>) =>
  call.then(() => 'ok', (e: unknown) => {
    if (KvmError.is(e)) return e.code
    throw e
  })

/** A size in pages, sometimes skewed off a page boundary, sometimes 0. */
const sizeArb = fc.tuple(fc.integer({ min: 0, max: NPAGES + 2 }), fc.oneof({ arbitrary: fc.constant(0), weight: 3 }, fc.integer({ min: 1, max: PAGE - 1 })))
  .map(([pages, skew]) => pages * PAGE + skew)

describe('properties: guest_memfd', () => {
  test('KVM_CREATE_GUEST_MEMFD succeeds iff the size is a non-zero page multiple and the flags are supported', async ({ kvm, skip }) => {
    const vm = await kvm.createVm()
    requireThat({ skip }, (await vm.checkExtension(KVM_CAP_GUEST_MEMFD)) > 0, 'KVM_CAP_GUEST_MEMFD = 0 on a default VM')
    const supported = BigInt(await vm.checkExtension(KVM_CAP_GUEST_MEMFD_FLAGS))
    const known = [0n, GUEST_MEMFD_FLAG_MMAP, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED]
    const flagsArb = fc.tuple(fc.constantFrom(...known), fc.option(fc.integer({ min: 0, max: 63 }), { freq: 3 }))
      .map(([flags, bit]) => (bit === null ? flags : flags | (1n << BigInt(bit))))
    await fc.assert(
      fc.asyncProperty(sizeArb, flagsArb, async (size, flags) => {
        const want = size > 0 && size % PAGE === 0 && (flags & ~supported) === 0n ? 'ok' : 'EINVAL'
        const create = vm.createGuestMemfd({ size, flags })
        const got = await outcome(create.then((g) => g.close()))
        expect(got, `KVM_CREATE_GUEST_MEMFD size ${size} flags 0x${flags.toString(16)} (supported 0x${supported.toString(16)})`).toBe(want)
      }),
      { numRuns: 80 },
    )
  })

  test('fallocate and punch-hole alignment and bounds', async ({ kvm, skip }) => {
    const vm = await kvm.createVm()
    requireThat({ skip }, (await vm.checkExtension(KVM_CAP_GUEST_MEMFD)) > 0, 'KVM_CAP_GUEST_MEMFD = 0 on a default VM')
    const gmem = await vm.createGuestMemfd({ size: NPAGES * PAGE })
    const modes = [0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE]
    const modeName = (m: number) => ['ALLOCATE', 'KEEP_SIZE', '', 'PUNCH_HOLE|KEEP_SIZE'][m]
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...modes), sizeArb, sizeArb, async (mode, offset, len) => {
        const punch = (mode & FALLOC_FL_PUNCH_HOLE) !== 0
        const want =
          len <= 0 ? 'EINVAL'
          : (mode & FALLOC_FL_KEEP_SIZE) === 0 ? 'EOPNOTSUPP'
          : offset % PAGE !== 0 || len % PAGE !== 0 ? 'EINVAL'
          : !punch && offset + len > NPAGES * PAGE ? 'EINVAL'
          : 'ok'
        const got = await outcome(gmem.fallocate(mode, offset, len))
        expect(got, `fallocate(${modeName(mode)}, offset ${offset}, len ${len}) on a ${NPAGES}-page guest_memfd`).toBe(want)
      }),
      { numRuns: 100 },
    )
  })
})
