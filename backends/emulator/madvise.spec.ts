import { describe, expect, test } from 'vitest'
import {
  MADV_COLLAPSE,
  MADV_DONTNEED,
  MADV_HUGEPAGE,
  MADV_POPULATE_READ,
  MADV_POPULATE_WRITE,
  MADV_REMOVE,
} from '../../harness/uapi/fs.ts'
import { GUEST_MEMFD_FLAG_MMAP } from '../../harness/uapi/kvm.ts'
import { createEmulatorBackend } from './index.ts'

const page = 4096

describe('madvise', () => {
  test('MADV_DONTNEED frees anonymous pages (they read 0) and leaves shmem contents', async () => {
    const kvm = createEmulatorBackend()
    const anon = await kvm.mmap({ size: 2 * page, backing: 'anonymous' })
    const shm = await kvm.mmap({ size: 2 * page, backing: 'shmem' })
    for (const m of [anon, shm]) {
      await m.fill(0, 2 * page, 5)
      await m.madvise(MADV_DONTNEED, 0, page)
    }
    expect(await anon.findMismatch(0, 2 * page, 0)).toBe(BigInt(page))
    expect(await shm.findMismatch(0, 2 * page, 5)).toBe(-1n)
    await kvm.close()
  })

  test('MADV_REMOVE punches shared files and is EINVAL on private anonymous memory', async () => {
    const kvm = createEmulatorBackend()
    const shm = await kvm.mmap({ size: 2 * page, backing: 'shmem' })
    const alias = await shm.alias()
    await shm.fill(0, 2 * page, 5)
    await shm.madvise(MADV_REMOVE, page, page)
    expect(await alias.findMismatch(0, 2 * page, 5)).toBe(BigInt(page))
    const anon = await kvm.mmap({ size: page, backing: 'anonymous' })
    await expect(anon.madvise(MADV_REMOVE)).rejects.toMatchObject({ code: 'EINVAL', op: 'madvise' })
    await kvm.close()
  })

  test('unknown advice and an unaligned start are EINVAL; length 0 does nothing', async () => {
    const kvm = createEmulatorBackend()
    const m = await kvm.mmap({ size: 2 * page, backing: 'anonymous' })
    await expect(m.madvise(12345)).rejects.toMatchObject({ code: 'EINVAL' })
    await expect(m.madvise(MADV_DONTNEED, 1, page)).rejects.toMatchObject({ code: 'EINVAL' })
    await expect(m.madvise(MADV_DONTNEED, 0, 0)).resolves.toBeUndefined()
    await kvm.close()
  })

  test('a range reaching past the mapping is ENOMEM; so is a closed mapping', async () => {
    const kvm = createEmulatorBackend()
    const m = await kvm.mmap({ size: page, backing: 'anonymous' })
    await expect(m.madvise(MADV_HUGEPAGE, 0, 2 * page)).rejects.toMatchObject({ code: 'ENOMEM' })
    await m.close()
    await expect(m.madvise(MADV_HUGEPAGE)).rejects.toMatchObject({ code: 'ENOMEM' })
    await kvm.close()
  })

  test('MADV_POPULATE_* on private guest_memfd memory is EFAULT; MADV_COLLAPSE on anonymous is fine', async () => {
    const kvm = createEmulatorBackend()
    const vm = await kvm.createVm()
    const gmem = await vm.createGuestMemfd({ size: page, flags: GUEST_MEMFD_FLAG_MMAP })
    const mem = await gmem.mmap({ length: page })
    await expect(mem.madvise(MADV_POPULATE_READ)).rejects.toMatchObject({ code: 'EFAULT' })
    await expect(mem.madvise(MADV_POPULATE_WRITE)).rejects.toMatchObject({ code: 'EFAULT' })
    const anon = await kvm.mmap({ size: 0x200000, backing: 'anonymous_thp' })
    await expect(anon.madvise(MADV_POPULATE_WRITE)).resolves.toBeUndefined()
    await expect(anon.madvise(MADV_COLLAPSE)).resolves.toBeUndefined()
    await kvm.close()
  })
})
