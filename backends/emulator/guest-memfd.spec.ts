// guest_memfd_test.c, case by case, plus the file's errno details (guest-memfd.ts).

import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import type { Backend, GuestMemfd, Vm } from '../../harness/backend.ts'
import { HostFault, KvmError } from '../../harness/errors.ts'
import {
  FALLOC_FL_COLLAPSE_RANGE,
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_NO_HIDE_STALE,
  FALLOC_FL_PUNCH_HOLE,
  FALLOC_FL_ZERO_RANGE,
  MADV_COLLAPSE,
  MADV_HUGEPAGE,
} from '../../harness/uapi/fs.ts'
import {
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  KVM_CAP_GUEST_MEMFD_FLAGS,
  KVM_X86_DEFAULT_VM,
  KVM_X86_SW_PROTECTED_VM,
} from '../../harness/uapi/kvm.ts'
import { createEmulatorBackend } from './index.ts'
import { UPSTREAM_6_18, defineProfile } from './profiles.ts'

const page = 4096
const total = 4 * page
const KEEP = FALLOC_FL_KEEP_SIZE
const PUNCH = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
const SHARED = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED

let kvm: Backend
let vm: Vm

beforeEach(async () => {
  kvm = createEmulatorBackend()
  vm = await kvm.createVm()
})
afterEach(() => kvm.close())

async function outcome(call: Promise<unknown>): Promise<string> {
  try {
    await call
    return 'ok'
  } catch (e) {
    if (KvmError.is(e) || HostFault.is(e)) return e.code
    throw e
  }
}

describe('KVM_CREATE_GUEST_MEMFD', () => {
  test('test_guest_memfd_flags: each of the 64 single bits is ok iff KVM_CAP_GUEST_MEMFD_FLAGS has it', async () => {
    for (const type of [KVM_X86_DEFAULT_VM, KVM_X86_SW_PROTECTED_VM]) {
      const v = await kvm.createVm({ type })
      const supported = BigInt(await v.checkExtension(KVM_CAP_GUEST_MEMFD_FLAGS))
      expect(supported).toBe(type === KVM_X86_DEFAULT_VM ? SHARED : GUEST_MEMFD_FLAG_MMAP)
      for (let bit = 0n; bit < 64n; bit++) {
        const flags = 1n << bit
        const got = await outcome(v.createGuestMemfd({ size: page, flags }))
        expect(got, `type ${type}, flag bit ${bit}`).toBe((flags & supported) !== 0n ? 'ok' : 'EINVAL')
      }
    }
  })

  test('test_create_guest_memfd_invalid_sizes: 1..page-1 and 0 are EINVAL, for every valid flag set', async () => {
    for (const flags of [0n, GUEST_MEMFD_FLAG_MMAP, SHARED]) {
      for (let size = 0; size < page; size++) {
        expect(await outcome(vm.createGuestMemfd({ size, flags })), `size ${size}`).toBe('EINVAL')
      }
    }
  })

  test('sizes that are negative as a loff_t are EINVAL', async () => {
    expect(await outcome(vm.createGuestMemfd({ size: 1n << 63n }))).toBe('EINVAL')
    expect(await outcome(vm.createGuestMemfd({ size: (1n << 64n) - 4096n }))).toBe('EINVAL')
  })

  test('flags are checked before the size', async () => {
    const e = await vm.createGuestMemfd({ size: 1, flags: 1n << 2n }).catch((x: unknown) => x)
    expect(e).toMatchObject({ code: 'EINVAL', op: 'KVM_CREATE_GUEST_MEMFD' })
  })

  test('the reserved words are not checked (measured on the 6.18 host)', async () => {
    const gmem = await vm.createGuestMemfd({ size: page, reserved: [1, 2, 3, 4, 5, 6] })
    expect(gmem.fd).toBeGreaterThan(vm.fd)
    await expect(vm.createGuestMemfd({ size: page, reserved: [0, 0, 0, 0, 0, 0, 0] })).rejects.toThrow(TypeError)
  })

  test('without guest_memfd in the kernel the ioctl does not exist (ENOTTY)', async () => {
    const noGmem = createEmulatorBackend({ profile: defineProfile(UPSTREAM_6_18, { name: 'x', description: 'x', guestMemfd: false }) })
    const v = await noGmem.createVm()
    await expect(v.createGuestMemfd({ size: page })).rejects.toMatchObject({ code: 'ENOTTY' })
    await noGmem.close()
  })

  test('test_create_guest_memfd_multiple: two files, their own sizes, distinct inodes', async () => {
    const fd1 = await vm.createGuestMemfd({ size: page })
    const st1 = await fd1.stat()
    expect(st1.size).toBe(BigInt(page))
    const fd2 = await vm.createGuestMemfd({ size: 2 * page })
    const st2 = await fd2.stat()
    expect(st2.size).toBe(BigInt(2 * page))
    expect((await fd1.stat()).size).toBe(BigInt(page))
    expect(st1.ino).not.toBe(st2.ino)
    expect(fd2.fd).toBe(fd1.fd + 1)
  })
})

describe('the file', () => {
  let gmem: GuestMemfd
  beforeEach(async () => {
    gmem = await vm.createGuestMemfd({ size: total, flags: SHARED })
  })

  test('test_file_size: st_size and st_blksize', async () => {
    expect(await gmem.stat()).toMatchObject({ size: BigInt(total), blockSize: page })
  })

  test('test_file_read_write: read and write are EINVAL, pread and pwrite ESPIPE (measured errnos)', async () => {
    await expect(gmem.read(64)).rejects.toMatchObject({ code: 'EINVAL', op: 'read' })
    await expect(gmem.write(new Uint8Array(64))).rejects.toMatchObject({ code: 'EINVAL', op: 'write' })
    await expect(gmem.pread(64, 0)).rejects.toMatchObject({ code: 'ESPIPE', op: 'pread' })
    await expect(gmem.pwrite(new Uint8Array(64), 0)).rejects.toMatchObject({ code: 'ESPIPE', op: 'pwrite' })
  })

  test('pread/pwrite check the position first: a negative one is EINVAL, even on a closed fd', async () => {
    await expect(gmem.pread(64, -1)).rejects.toMatchObject({ code: 'EINVAL' })
    await gmem.close()
    await expect(gmem.pwrite(new Uint8Array(1), (1n << 64n) - 1n)).rejects.toMatchObject({ code: 'EINVAL' })
    await expect(gmem.pwrite(new Uint8Array(1), 0)).rejects.toMatchObject({ code: 'EBADF' })
  })

  test('test_fallocate: the nine steps', async () => {
    expect(await outcome(gmem.fallocate(KEEP, 0, total))).toBe('ok')
    expect(await outcome(gmem.fallocate(PUNCH, page - 1, page))).toBe('EINVAL')
    expect(await outcome(gmem.fallocate(KEEP, total, page))).toBe('EINVAL')
    expect(await outcome(gmem.fallocate(KEEP, total + page, page))).toBe('EINVAL')
    expect(await outcome(gmem.fallocate(PUNCH, total, page))).toBe('ok')
    expect(await outcome(gmem.fallocate(PUNCH, total + page, page))).toBe('ok')
    expect(await outcome(gmem.fallocate(PUNCH, page, page - 1))).toBe('EINVAL')
    expect(await outcome(gmem.fallocate(PUNCH, page, page))).toBe('ok')
    expect(await outcome(gmem.fallocate(KEEP, page, page))).toBe('ok')
  })

  test('test_invalid_punch_hole: the ten unaligned pairs are EINVAL', async () => {
    const p = page
    const pairs = [[0, 1], [0, p - 1], [0, p + 1], [1, 1], [1, p - 1], [1, p], [1, p + 1], [p, 1], [p, p - 1], [p, p + 1]]
    for (const [offset, len] of pairs) {
      expect(await outcome(gmem.fallocate(PUNCH, offset!, len!)), `(${offset}, ${len})`).toBe('EINVAL')
    }
  })

  test('fallocate: vfs_fallocate() before kvm_gmem_fallocate() (measured on the 6.18 host)', async () => {
    const big = 1n << 62n
    expect(await outcome(gmem.fallocate(KEEP, -page, page))).toBe('EINVAL') // offset < 0
    expect(await outcome(gmem.fallocate(KEEP, 0, 0))).toBe('EINVAL') // len <= 0
    expect(await outcome(gmem.fallocate(FALLOC_FL_NO_HIDE_STALE | KEEP, 0, page))).toBe('EOPNOTSUPP')
    expect(await outcome(gmem.fallocate(0x100 | KEEP, 0, page))).toBe('EOPNOTSUPP')
    expect(await outcome(gmem.fallocate(FALLOC_FL_PUNCH_HOLE, 0, page))).toBe('EOPNOTSUPP') // PUNCH needs KEEP
    expect(await outcome(gmem.fallocate(FALLOC_FL_COLLAPSE_RANGE | KEEP, 0, page))).toBe('EOPNOTSUPP')
    expect(await outcome(gmem.fallocate(PUNCH | FALLOC_FL_ZERO_RANGE, 0, page))).toBe('EOPNOTSUPP')
    expect(await outcome(gmem.fallocate(KEEP, big, big))).toBe('EFBIG')
    expect(await outcome(gmem.fallocate(0, big, big))).toBe('EFBIG') // before guest_memfd sees the mode
    expect(await outcome(gmem.fallocate(FALLOC_FL_ZERO_RANGE | KEEP, big, big))).toBe('EFBIG')
    expect(await outcome(gmem.fallocate(0, 0, page))).toBe('EOPNOTSUPP') // guest_memfd: no KEEP_SIZE
    expect(await outcome(gmem.fallocate(FALLOC_FL_ZERO_RANGE | KEEP, 0, page))).toBe('EOPNOTSUPP')
    expect(await outcome(gmem.fallocate(KEEP, 1, 0x100000))).toBe('EINVAL') // unaligned before past-EOF
    expect(await outcome(gmem.fallocate(PUNCH, 1n << 40n, page))).toBe('ok')
  })

  test('every method of a closed guest_memfd is EBADF', async () => {
    await gmem.close()
    const calls: [string, () => Promise<unknown>][] = [
      ['fstat', () => gmem.stat()],
      ['read', () => gmem.read(1)],
      ['write', () => gmem.write(new Uint8Array(1))],
      ['pread', () => gmem.pread(1, 0)],
      ['pwrite', () => gmem.pwrite(new Uint8Array(1), 0)],
      ['fallocate', () => gmem.fallocate(KEEP, 0, page)],
      ['mmap', () => gmem.mmap({ length: page })],
      ['close', () => gmem.close()],
    ]
    for (const [op, call] of calls) await expect(call(), op).rejects.toMatchObject({ code: 'EBADF', op })
  })
})

describe('mmap', () => {
  test('test_mmap_not_supported: without GUEST_MEMFD_FLAG_MMAP, ENODEV (MAP_PRIVATE too)', async () => {
    const gmem = await vm.createGuestMemfd({ size: total })
    await expect(gmem.mmap({ length: page })).rejects.toMatchObject({ code: 'ENODEV', op: 'mmap' })
    await expect(gmem.mmap({ length: total })).rejects.toMatchObject({ code: 'ENODEV' })
    await expect(gmem.mmap({ length: page, shared: false })).rejects.toMatchObject({ code: 'ENODEV' })
  })

  test('test_mmap_cow: MAP_PRIVATE is EINVAL', async () => {
    const gmem = await vm.createGuestMemfd({ size: total, flags: GUEST_MEMFD_FLAG_MMAP })
    await expect(gmem.mmap({ length: total, shared: false })).rejects.toMatchObject({ code: 'EINVAL', op: 'mmap' })
  })

  test('mmap(2) itself: length 0 and an unaligned offset are EINVAL', async () => {
    const gmem = await vm.createGuestMemfd({ size: total, flags: SHARED })
    await expect(gmem.mmap({ length: 0 })).rejects.toMatchObject({ code: 'EINVAL' })
    await expect(gmem.mmap({ length: page, offset: 1 })).rejects.toMatchObject({ code: 'EINVAL' })
  })

  test('test_mmap_supported: fill, punch the first page (reads 0), fill it again', async () => {
    const gmem = await vm.createGuestMemfd({ size: total, flags: SHARED })
    const mem = await gmem.mmap({ length: total })
    expect(mem).toMatchObject({ backing: 'guest_memfd', fd: gmem.fd, size: BigInt(total) })
    await mem.fill(0, total, 0xaa)
    expect(await mem.findMismatch(0, total, 0xaa)).toBe(-1n)
    await gmem.fallocate(PUNCH, 0, page)
    expect(await mem.findMismatch(0, page, 0x00)).toBe(-1n)
    expect(await mem.findMismatch(page, total - page, 0xaa)).toBe(-1n)
    await mem.fill(0, page, 0xaa)
    expect(await mem.findMismatch(0, total, 0xaa)).toBe(-1n)
    await mem.close()
  })

  test('test_fault_overflow: past EOF is SIGBUS; the bytes before it were written', async () => {
    const gmem = await vm.createGuestMemfd({ size: total, flags: SHARED })
    const mem = await gmem.mmap({ length: 4 * total })
    const e = await mem.fill(0, 4 * total, 0xaa).catch((x: unknown) => x)
    expect(e).toMatchObject({ name: 'HostFault', code: 'SIGBUS', address: mem.addr + BigInt(total) })
    await expect(mem.read(total, 1)).rejects.toMatchObject({ code: 'SIGBUS' })
    expect(await mem.findMismatch(0, total, 0xaa)).toBe(-1n)
  })

  test('test_fault_private: without INIT_SHARED the memory is private and any access is SIGBUS', async () => {
    const gmem = await vm.createGuestMemfd({ size: total, flags: GUEST_MEMFD_FLAG_MMAP })
    const mem = await gmem.mmap({ length: total })
    await expect(mem.read(0, 1)).rejects.toMatchObject({ code: 'SIGBUS', address: mem.addr })
    await expect(mem.fill(page, 1, 0)).rejects.toMatchObject({ code: 'SIGBUS', address: mem.addr + BigInt(page) })
  })

  test('SW_PROTECTED: MMAP without INIT_SHARED maps, and faults like test_fault_private', async () => {
    const pvm = await kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM })
    const gmem = await pvm.createGuestMemfd({ size: total, flags: GUEST_MEMFD_FLAG_MMAP })
    const mem = await gmem.mmap({ length: total })
    await expect(mem.write(0, Uint8Array.of(1))).rejects.toMatchObject({ code: 'SIGBUS' })
  })

  test('two mappings, and an alias, of one file see the same bytes', async () => {
    const gmem = await vm.createGuestMemfd({ size: total, flags: SHARED })
    const a = await gmem.mmap({ length: total })
    const b = await gmem.mmap({ length: 2 * page, offset: 2 * page })
    await a.write(2 * page + 5, Uint8Array.of(0x11, 0x22))
    expect([...(await b.read(5, 2))]).toEqual([0x11, 0x22])
    const c = await b.alias()
    expect(c.addr).not.toBe(b.addr)
    await c.fill(0, page, 0x33)
    expect(await a.findMismatch(2 * page, page, 0x33)).toBe(-1n)
  })

  test('a mapping keeps the file after the fd is closed; the fd number is then free', async () => {
    const gmem = await vm.createGuestMemfd({ size: total, flags: SHARED })
    const mem = await gmem.mmap({ length: total })
    await mem.fill(0, total, 0x77)
    await gmem.close()
    expect(await mem.findMismatch(0, total, 0x77)).toBe(-1n)
    expect((await vm.createGuestMemfd({ size: page })).fd).toBe(gmem.fd)
  })

  test('test_collapse: MADV_HUGEPAGE is fine, MADV_COLLAPSE is EINVAL', async () => {
    const gmem = await vm.createGuestMemfd({ size: 0x200000, flags: SHARED })
    const mem = await gmem.mmap({ length: 0x200000 })
    expect(mem.addr % 0x200000n).toBe(0n)
    await mem.fill(0, 0x200000, 1)
    await mem.madvise(MADV_HUGEPAGE)
    await expect(mem.madvise(MADV_COLLAPSE)).rejects.toMatchObject({ code: 'EINVAL', op: 'madvise' })
  })
})
