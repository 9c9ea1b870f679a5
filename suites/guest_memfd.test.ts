// Port of tools/testing/selftests/kvm/guest_memfd_test.c: every case that needs no vCPU and no NUMA
// (upstream-selftests.md §D.2), plus the v6.8-era cases that differ (§D.1).
//
// Upstream runs __test_guest_memfd(vm, flags) for each VM type in KVM_CAP_VM_TYPES and each flag set in
// KVM_CAP_GUEST_MEMFD_FLAGS. Here the matrix is fixed (every x86 VM type this suite can create × the
// three flag sets) and a variant the backend lacks skips with the reason, so every backend reports the
// same test names and runs can be compared test for test.

import type { GuestMemfd, Vm } from '../harness/backend.ts'
import { HostFault, KvmError } from '../harness/errors.ts'
import { expectErrno, expectOk } from '../harness/expect-errno.ts'
import { requires, requireThat, vmTypeName, type GateContext } from '../harness/gating.ts'
import { describe, expect, test } from '../harness/test.ts'
import { describeExit, getUcall, guestDone, guestSync } from '../harness/kvm-util/ucall.ts'
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, MADV_COLLAPSE, MADV_DONTNEED, MADV_HUGEPAGE } from '../harness/uapi/fs.ts'
import {
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  KVM_CAP_GUEST_MEMFD,
  KVM_CAP_GUEST_MEMFD_FLAGS,
  KVM_MEM_GUEST_MEMFD,
  KVM_X86_DEFAULT_VM,
  KVM_X86_SW_PROTECTED_VM,
} from '../harness/uapi/kvm.ts'

const page = 4096
const totalSize = 4 * page
const PMD_SIZE = 0x200000
const PUNCH = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE

const flagSetName = (flags: bigint) =>
  flags === 0n
    ? '0'
    : [
        flags & GUEST_MEMFD_FLAG_MMAP ? 'MMAP' : '',
        flags & GUEST_MEMFD_FLAG_INIT_SHARED ? 'INIT_SHARED' : '',
      ]
        .filter(Boolean)
        .join(' | ')

/** A VM of `type` whose guest_memfd supports `flags`, or a skip saying why not. */
async function vmWithGmemFlags(t: GateContext, type: number, flags: bigint): Promise<Vm> {
  await requires(t, { cap: KVM_CAP_GUEST_MEMFD }, { vmType: type })
  const vm = await t.kvm.createVm({ type })
  const supported = BigInt(await vm.checkExtension(KVM_CAP_GUEST_MEMFD_FLAGS))
  requireThat(
    t,
    (supported & flags) === flags,
    `KVM_CAP_GUEST_MEMFD_FLAGS = 0x${supported.toString(16)} on ${vmTypeName(type)} lacks ${flagSetName(flags)}`,
  )
  return vm
}

/** upstream gmem_test(): a fresh 4-page guest_memfd with `flags`. */
async function gmemTest(t: GateContext, type: number, flags: bigint): Promise<{ vm: Vm; gmem: GuestMemfd }> {
  const vm = await vmWithGmemFlags(t, type, flags)
  const gmem = await vm.createGuestMemfd({ size: totalSize, flags })
  return { vm, gmem }
}

/** Asserts that a file operation on guest_memfd failed; upstream checks only `< 0`. */
async function expectRefused(call: Promise<unknown>, what: string): Promise<void> {
  const outcome = await call.then(
    () => 'succeeded',
    (e: unknown) => (KvmError.is(e) ? undefined : e),
  )
  if (outcome === 'succeeded') expect.fail(`${what} on guest_memfd succeeded; it must fail`)
  if (outcome !== undefined) throw outcome
}

async function expectSigbus(call: Promise<unknown>, what: string): Promise<HostFault> {
  try {
    await call
  } catch (e) {
    if (HostFault.is(e) && e.code === 'SIGBUS') return e
    throw e
  }
  return expect.fail(`${what}: expected SIGBUS, but the access completed`)
}

const VM_TYPES = [KVM_X86_DEFAULT_VM, KVM_X86_SW_PROTECTED_VM]
const FLAG_SETS = [0n, GUEST_MEMFD_FLAG_MMAP, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED]

describe('guest_memfd_test', () => {
  for (const type of VM_TYPES) {
    describe(vmTypeName(type), () => {
      test('test_guest_memfd_flags', async ({ kvm, skip }) => {
        const vm = await vmWithGmemFlags({ kvm, skip }, type, 0n)
        const supported = BigInt(await vm.checkExtension(KVM_CAP_GUEST_MEMFD_FLAGS))
        for (let bit = 0n; bit < 64n; bit++) {
          const flag = 1n << bit
          const create = vm.createGuestMemfd({ size: page, flags: flag })
          if (supported & flag) {
            const gmem = await expectOk(create, `KVM_CREATE_GUEST_MEMFD with supported flag 0x${flag.toString(16)}`)
            await gmem.close()
          } else {
            await expectErrno(create, 'EINVAL', `KVM_CREATE_GUEST_MEMFD with unsupported flag 0x${flag.toString(16)}`)
          }
        }
      })

      for (const flags of FLAG_SETS) {
        const mmap = (flags & GUEST_MEMFD_FLAG_MMAP) !== 0n
        const shared = (flags & GUEST_MEMFD_FLAG_INIT_SHARED) !== 0n

        describe(`flags=${flagSetName(flags)}`, () => {
          test('test_create_guest_memfd_multiple', async ({ kvm, skip }) => {
            const vm = await vmWithGmemFlags({ kvm, skip }, type, flags)
            const fd1 = await vm.createGuestMemfd({ size: page, flags })
            const st1 = await fd1.stat()
            expect(st1.size, 'size of the first guest_memfd').toBe(BigInt(page))

            const fd2 = await vm.createGuestMemfd({ size: page * 2, flags })
            const st2 = await fd2.stat()
            expect(st2.size, 'size of the second guest_memfd').toBe(BigInt(page * 2))
            expect((await fd1.stat()).size, 'the first guest_memfd keeps its size').toBe(BigInt(page))
            expect(st1.ino, 'two guest_memfd files share an inode').not.toBe(st2.ino)
          })

          test('test_create_guest_memfd_invalid_sizes', async ({ kvm, skip }) => {
            const vm = await vmWithGmemFlags({ kvm, skip }, type, flags)
            for (let size = 1; size < page; size++) {
              await expectErrno(vm.createGuestMemfd({ size, flags }), 'EINVAL', `KVM_CREATE_GUEST_MEMFD of size ${size}`)
            }
          })

          test('test_file_read_write', async ({ kvm, skip }) => {
            const { gmem } = await gmemTest({ kvm, skip }, type, flags)
            const buf = new Uint8Array(64)
            await expectRefused(gmem.read(buf.length), 'read()')
            await expectRefused(gmem.write(buf), 'write()')
            await expectRefused(gmem.pread(buf.length, 0), 'pread()')
            await expectRefused(gmem.pwrite(buf, 0), 'pwrite()')
          })

          if (mmap && shared) {
            test('test_mmap_supported', async ({ kvm, skip }) => {
              const { gmem } = await gmemTest({ kvm, skip }, type, flags)
              const mem = await expectOk(gmem.mmap({ length: totalSize }), 'mmap(MAP_SHARED) of guest_memfd')
              await mem.fill(0, totalSize, 0xaa)
              expect(await mem.findMismatch(0, totalSize, 0xaa), 'first byte not 0xaa').toBe(-1n)

              await expectOk(gmem.fallocate(PUNCH, 0, page), 'punching the first page')
              expect(await mem.findMismatch(0, page, 0x00), 'punched page: first byte not 0x00').toBe(-1n)
              expect(await mem.findMismatch(page, totalSize - page, 0xaa), 'rest: first byte not 0xaa').toBe(-1n)

              await mem.fill(0, page, 0xaa)
              expect(await mem.findMismatch(0, totalSize, 0xaa), 'first byte not 0xaa after refill').toBe(-1n)
            })

            test('test_fault_overflow', async ({ kvm, skip }) => {
              const { gmem } = await gmemTest({ kvm, skip }, type, flags)
              const mapSize = totalSize * 4
              const mem = await gmem.mmap({ length: mapSize })
              // Writing the whole mapping runs off the end of the file.
              const fault = await expectSigbus(mem.fill(0, mapSize, 0xaa), 'memset past the end of guest_memfd')
              expect(fault.address, 'SIGBUS address').toBe(mem.addr + BigInt(totalSize))
              await expectSigbus(mem.read(totalSize, 1), `reading byte ${totalSize} (the end of the file)`)
              expect(await mem.findMismatch(0, totalSize, 0xaa), 'first byte within the file not 0xaa').toBe(-1n)
            })

            test('test_collapse', async ({ kvm, skip }) => {
              const vm = await vmWithGmemFlags({ kvm, skip }, type, flags)
              const gmem = await vm.createGuestMemfd({ size: PMD_SIZE, flags })
              const mem = await gmem.mmap({ length: PMD_SIZE, align: PMD_SIZE })
              for (let off = 0; off < PMD_SIZE; off += page) await mem.read(off, 1)

              await expectOk(mem.madvise(MADV_HUGEPAGE), 'MADV_HUGEPAGE on guest_memfd')
              await expectErrno(mem.madvise(MADV_COLLAPSE), 'EINVAL', 'MADV_COLLAPSE on guest_memfd')
              await expectOk(mem.madvise(MADV_DONTNEED), 'MADV_DONTNEED on guest_memfd')
              for (let off = 0; off < PMD_SIZE; off += page) await mem.read(off, 1)
            })
          }

          if (mmap && !shared) {
            test('test_fault_private', async ({ kvm, skip }) => {
              const { gmem } = await gmemTest({ kvm, skip }, type, flags)
              const mem = await expectOk(gmem.mmap({ length: totalSize }), 'mmap of private guest_memfd')
              // Memory created without INIT_SHARED is private: no byte of it is accessible to the host.
              for (let off = 0; off < totalSize; off += page) {
                await expectSigbus(mem.read(off, 1), `reading private page at offset ${off}`)
              }
            })
          }

          if (mmap) {
            test('test_mmap_cow', async ({ kvm, skip }) => {
              const { gmem } = await gmemTest({ kvm, skip }, type, flags)
              await expectErrno(gmem.mmap({ length: totalSize, shared: false }), 'EINVAL', 'mmap(MAP_PRIVATE) of guest_memfd')
            })
          } else {
            test('test_mmap_not_supported', async ({ kvm, skip }) => {
              const { gmem } = await gmemTest({ kvm, skip }, type, flags)
              await expectErrno(gmem.mmap({ length: page }), 'ENODEV', 'mmap of one page of guest_memfd without MMAP')
              await expectErrno(gmem.mmap({ length: totalSize }), 'ENODEV', 'mmap of guest_memfd without MMAP')
            })
          }

          test('test_file_size', async ({ kvm, skip }) => {
            const { gmem } = await gmemTest({ kvm, skip }, type, flags)
            const st = await gmem.stat()
            expect(st.size, 'st_size').toBe(BigInt(totalSize))
            expect(st.blockSize, 'st_blksize').toBe(page)
          })

          test('test_fallocate', async ({ kvm, skip }) => {
            const { gmem } = await gmemTest({ kvm, skip }, type, flags)
            const keep = FALLOC_FL_KEEP_SIZE
            await expectOk(gmem.fallocate(keep, 0, totalSize), 'fallocate [0, total)')
            await expectErrno(gmem.fallocate(PUNCH, page - 1, page), 'EINVAL', 'punch at unaligned offset page-1')
            await expectErrno(gmem.fallocate(keep, totalSize, page), 'EINVAL', 'fallocate at offset total')
            await expectErrno(gmem.fallocate(keep, totalSize + page, page), 'EINVAL', 'fallocate at total+page')
            await expectOk(gmem.fallocate(PUNCH, totalSize, page), 'punch at offset total')
            await expectOk(gmem.fallocate(PUNCH, totalSize + page, page), 'punch at total+page')
            await expectErrno(gmem.fallocate(PUNCH, page, page - 1), 'EINVAL', 'punch of length page-1')
            await expectOk(gmem.fallocate(PUNCH, page, page), 'punch [page, 2*page)')
            await expectOk(gmem.fallocate(keep, page, page), 're-allocating the hole')
          })

          test('test_invalid_punch_hole', async ({ kvm, skip }) => {
            const { gmem } = await gmemTest({ kvm, skip }, type, flags)
            const cases: [number, number][] = [
              [0, 1], [0, page - 1], [0, page + 1],
              [1, 1], [1, page - 1], [1, page], [1, page + 1],
              [page, 1], [page, page - 1], [page, page + 1],
            ]
            for (const [offset, len] of cases) {
              await expectErrno(gmem.fallocate(PUNCH, offset, len), 'EINVAL', `punch hole (offset ${offset}, len ${len})`)
            }
          })
        })
      }
    })
  }
})

describe('guest_memfd_test', () => {
  // The host fills the file through mmap, the guest checks and overwrites it through a guest_memfd
  // memslot whose userspace_addr is NULL, and the host sees the guest's bytes through a new mapping.
  test('test_guest_memfd_guest', async ({ kvm, skip }) => {
    await requires({ kvm, skip }, { cap: KVM_CAP_GUEST_MEMFD_FLAGS }, { feature: 'vcpu' })
    const vm = await kvm.createVm()
    const flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED
    const supported = BigInt(await vm.checkExtension(KVM_CAP_GUEST_MEMFD_FLAGS))
    expect(supported & flags, 'a default VM supports GUEST_MEMFD_FLAG_MMAP | INIT_SHARED').toBe(flags)

    const gpa = 4n << 30n
    const size = page
    const gmem = await vm.createGuestMemfd({ size, flags })
    await expectOk(
      vm.setUserMemoryRegion2({
        slot: 1, flags: KVM_MEM_GUEST_MEMFD, guestPhysAddr: gpa, memorySize: size, userspaceAddr: 0,
        guestMemfd: gmem.fd, guestMemfdOffset: 0,
      }),
      'binding the guest_memfd at 4 GiB',
    )
    const before = await gmem.mmap({ length: size })
    await before.fill(0, size, 0xaa)
    await before.close()

    const vcpu = await vm.createVcpu(0)
    await vcpu.loadProgram({
      steps: [
        { op: 'check', gva: gpa, length: size, byte: 0xaa },
        guestSync(), // how many bytes were not 0xaa
        { op: 'fill', gva: gpa, length: size, byte: 0xff },
        guestDone(),
      ],
    })
    const first = await vcpu.run({ timeoutMs: 10_000 })
    const sync = getUcall(first)
    if (sync?.cmd !== 'sync') expect.fail(`expected GUEST_SYNC after the guest's check, got ${describeExit(first)}`)
    expect(sync.value, 'bytes the guest read that were not 0xaa').toBe(0)
    const last = await vcpu.run({ timeoutMs: 10_000 })
    expect(getUcall(last), `expected GUEST_DONE, got ${describeExit(last)}`).toEqual({ cmd: 'done' })

    const after = await gmem.mmap({ length: size })
    expect(await after.findMismatch(0, size, 0xff), 'first byte the host reads that is not 0xff').toBe(-1n)
  })
})

// The v6.8 test, where it differs from today's: its flags loop started at 0 and never ran; the fixed
// loop checks every single-bit flag the backend does not report in KVM_CAP_GUEST_MEMFD_FLAGS.
describe('guest_memfd_test (v6.8)', () => {
  test('test_create_guest_memfd_invalid', async ({ kvm, skip }) => {
    await requires({ kvm, skip }, { cap: KVM_CAP_GUEST_MEMFD })
    const vm = await kvm.createVm()
    for (let size = 1; size < page; size++) {
      await expectErrno(vm.createGuestMemfd({ size }), 'EINVAL', `KVM_CREATE_GUEST_MEMFD of size ${size}`)
    }
    const supported = BigInt(await vm.checkExtension(KVM_CAP_GUEST_MEMFD_FLAGS))
    for (let bit = 0n; bit < 64n; bit++) {
      const flag = 1n << bit
      if (supported & flag) continue
      await expectErrno(vm.createGuestMemfd({ size: page, flags: flag }), 'EINVAL', `flag 0x${flag.toString(16)}`)
    }
  })

  test('test_mmap', async ({ kvm, skip }) => {
    await requires({ kvm, skip }, { cap: KVM_CAP_GUEST_MEMFD })
    const vm = await kvm.createVm()
    const gmem = await vm.createGuestMemfd({ size: totalSize })
    // 6.8 had no GUEST_MEMFD_FLAG_MMAP: a guest_memfd created without flags is still not mappable.
    await expectRefused(gmem.mmap({ length: page }), 'mmap(MAP_SHARED)')
  })
})
