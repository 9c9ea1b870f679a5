import { describe, expect, test } from 'vitest'
import { HostFault, KvmError } from '../../harness/errors.ts'
import {
  AddressSpace,
  MMAP_BASE,
  TASK_SIZE_MAX,
  accessOk,
  anonymousObject,
  shmemObject,
  untaggedAddr,
} from './address-space.ts'
import { createEmulatorBackend } from './index.ts'
import { PAGE_SIZE, PageStore } from './page-store.ts'

const MiB = 1n << 20n
const GiB = 1n << 30n

describe('accessOk (x86 access_ok with a run-time size)', () => {
  test('the end may reach TASK_SIZE_MAX but not pass it', () => {
    expect(accessOk(TASK_SIZE_MAX - 2n * MiB, 2n * MiB)).toBe(true)
    expect(accessOk(TASK_SIZE_MAX - 2n * MiB + 4096n, 2n * MiB)).toBe(false)
    expect(accessOk(1n << 47n, 0n)).toBe(false)
    expect(accessOk(0n, TASK_SIZE_MAX)).toBe(true)
  })

  test('kernel, non-canonical and wrapping ranges fail', () => {
    expect(accessOk(0xffff800000000000n, 2n * MiB)).toBe(false)
    expect(accessOk(0x0000800000000000n, 4096n)).toBe(false)
    expect(accessOk((1n << 64n) - 4096n, 8192n)).toBe(false)
  })

  test('address 0 is a user address (hva NULL with a size is accepted)', () => {
    expect(accessOk(0n, 2n * MiB)).toBe(true)
  })

  test('x86-64 without LAM untags nothing', () => {
    expect(untaggedAddr(0x3f00_7f00_0000_0000n)).toBe(0x3f00_7f00_0000_0000n)
  })
})

describe('PageStore', () => {
  test('pages are allocated on first write and read zero before', () => {
    const store = new PageStore()
    expect(store.read(123456n, 8)).toEqual(new Uint8Array(8))
    expect(store.residentPages).toBe(0)
    store.write(4094n, Uint8Array.of(1, 2, 3, 4))
    expect(store.residentPages).toBe(2)
    expect([...store.read(4093n, 6)]).toEqual([0, 1, 2, 3, 4, 0])
  })

  test('fill and findMismatch across pages; zero fills allocate nothing', () => {
    const store = new PageStore()
    store.fill(0n, 64n * GiB, 0)
    expect(store.residentPages).toBe(0)
    store.fill(100n, 10_000n, 0xaa)
    expect(store.findMismatch(100n, 10_000n, 0xaa)).toBe(-1n)
    expect(store.findMismatch(0n, 20_000n, 0xaa)).toBe(0n)
    expect(store.findMismatch(0n, 64n * GiB, 0)).toBe(100n)
    expect(store.findMismatch(10_100n, 64n * GiB, 0)).toBe(-1n)
    store.fill(5000n, 1n, 0)
    expect(store.findMismatch(100n, 10_000n, 0xaa)).toBe(4900n)
  })

  test('discard drops whole pages and zeroes partial ones', () => {
    const store = new PageStore()
    store.fill(0n, 3n * 4096n, 7)
    store.discard(4096n, 4096n + 10n)
    expect(store.residentPages).toBe(2)
    expect(store.findMismatch(4096n, 4096n + 10n, 0)).toBe(-1n)
    expect(store.read(2n * 4096n + 10n, 1)[0]).toBe(7)
  })
})

describe('AddressSpace', () => {
  test('mmap hands out page-aligned addresses counting down from 0x7f0000000000', () => {
    const as = new AddressSpace()
    const a = as.map(anonymousObject(), 4096n)
    const b = as.map(anonymousObject(), 10_000n)
    if (a === 'ENOMEM' || b === 'ENOMEM') throw new Error('ENOMEM')
    expect(a.start).toBe(MMAP_BASE - 4096n)
    expect(a.end).toBe(MMAP_BASE)
    expect(b.end - b.start).toBe(3n * 4096n)
    expect(b.end).toBeLessThanOrEqual(a.start)
    expect(b.start % 4096n).toBe(0n)
  })

  test('mappings of 2 MiB or more start on a 2 MiB boundary', () => {
    const as = new AddressSpace()
    as.map(anonymousObject(), 4096n)
    const big = as.map(anonymousObject(), 4n * MiB)
    if (big === 'ENOMEM') throw new Error('ENOMEM')
    expect(big.start % (2n * MiB)).toBe(0n)
  })

  test('32764 x 2 MiB with MAP_NORESERVE semantics costs nothing until touched', () => {
    const as = new AddressSpace()
    const vma = as.map(anonymousObject(), 32764n * 2n * MiB)
    if (vma === 'ENOMEM') throw new Error('ENOMEM')
    expect(vma.object.pages.residentPages).toBe(0)
    expect(as.write(vma.end - 1n, Uint8Array.of(9))).toBeUndefined()
    expect(vma.object.pages.residentPages).toBe(1)
  })

  test('running out of address space is ENOMEM', () => {
    const as = new AddressSpace()
    expect(as.map(anonymousObject(), MMAP_BASE)).toBe('ENOMEM')
  })

  test('accesses outside any mapping fault with SIGSEGV at the first unmapped byte', () => {
    const as = new AddressSpace()
    const vma = as.map(anonymousObject(), 8192n)
    if (vma === 'ENOMEM') throw new Error('ENOMEM')
    expect(as.read(vma.start - 1n, 1)).toEqual({ fault: 'SIGSEGV', address: vma.start - 1n })
    expect(as.write(vma.end - 2n, new Uint8Array(4))).toEqual({ fault: 'SIGSEGV', address: vma.end })
    // The bytes before the fault were written, as a byte copy would have.
    expect([...(as.read(vma.end - 2n, 2) as Uint8Array)]).toEqual([0, 0])
    as.unmap(vma)
    expect(as.read(vma.start, 1)).toEqual({ fault: 'SIGSEGV', address: vma.start })
  })

  test('two mappings of one shmem file share its pages; past EOF is SIGBUS', () => {
    const as = new AddressSpace()
    const file = shmemObject(8192n)
    const a = as.map(file, 8192n)
    const b = as.map(file, 3n * 4096n)
    if (a === 'ENOMEM' || b === 'ENOMEM') throw new Error('ENOMEM')
    as.write(a.start + 5000n, Uint8Array.of(0x5a))
    expect((as.read(b.start + 5000n, 1) as Uint8Array)[0]).toBe(0x5a)
    expect(as.read(b.start + 8191n, 2)).toEqual({ fault: 'SIGBUS', address: b.start + 8192n })
  })

  test('an access spanning two adjacent mappings is one access', () => {
    const as = new AddressSpace()
    const hi = as.map(anonymousObject(), 4096n)
    const lo = as.map(anonymousObject(), 4096n)
    if (hi === 'ENOMEM' || lo === 'ENOMEM') throw new Error('ENOMEM')
    expect(lo.end).toBe(hi.start)
    expect(as.fill(lo.start + 4000n, 200n, 3)).toBeUndefined()
    expect(as.findMismatch(lo.start + 4000n, 200n, 3)).toBe(-1n)
    expect(as.findMismatch(lo.start, 8192n, 0)).toBe(4000n)
  })

  test('pieces() names the holes', () => {
    const as = new AddressSpace()
    const a = as.map(anonymousObject(), 4096n)
    if (a === 'ENOMEM') throw new Error('ENOMEM')
    const pieces = [...as.pieces(a.start - 4096n, a.end + 4096n)].map((p) => [p.from, p.to, p.vma === a])
    expect(pieces).toEqual([
      [a.start - 4096n, a.start, false],
      [a.start, a.end, true],
      [a.end, a.end + 4096n, false],
    ])
  })
})

describe('host mappings through the contract', () => {
  test('info() lists the available backings; hugetlb is not among them and mmap says so', async () => {
    const kvm = createEmulatorBackend()
    expect((await kvm.info()).backings).toEqual(['anonymous', 'anonymous_thp', 'shmem'])
    await expect(kvm.mmap({ size: 2n * MiB, backing: 'anonymous_hugetlb' })).rejects.toMatchObject({
      code: 'ENOSYS',
      op: 'mmap',
    })
    await expect(kvm.mmap({ size: 0, backing: 'anonymous' })).rejects.toMatchObject({ code: 'EINVAL' })
    await kvm.close()
  })

  test('anonymous memory reads 0 until written; shmem carries a memfd and aliases share bytes', async () => {
    const kvm = createEmulatorBackend()
    const anon = await kvm.mmap({ size: 3 * PAGE_SIZE, backing: 'anonymous_thp' })
    expect(anon.fd).toBeNull()
    expect(anon.size).toBe(3n * 4096n)
    expect(await anon.findMismatch(0, anon.size, 0)).toBe(-1n)
    await anon.write(4095, Uint8Array.of(1, 2))
    expect([...(await anon.read(4094, 4))]).toEqual([0, 1, 2, 0])
    await expect(anon.alias()).rejects.toMatchObject({ code: 'EINVAL', op: 'mmap' })

    const shm = await kvm.mmap({ size: 2 * PAGE_SIZE, backing: 'shmem' })
    expect(shm.fd).toBe(4)
    const alias = await shm.alias()
    expect(alias.addr).not.toBe(shm.addr)
    expect(alias.fd).toBe(shm.fd)
    await shm.fill(0, 8192, 0xab)
    expect(await alias.findMismatch(0, 8192, 0xab)).toBe(-1n)
    await kvm.close()
  })

  test('an access past the mapping is a HostFault; a closed mapping is SIGSEGV', async () => {
    const kvm = createEmulatorBackend()
    const m = await kvm.mmap({ size: PAGE_SIZE, backing: 'anonymous' })
    const e = await m.read(4095, 2).catch((x: unknown) => x)
    expect(HostFault.is(e)).toBe(true)
    expect(e).toMatchObject({ code: 'SIGSEGV', address: m.addr + 4096n, op: 'HostMapping.read' })
    await m.close()
    await expect(m.write(0, Uint8Array.of(1))).rejects.toMatchObject({ name: 'HostFault', code: 'SIGSEGV' })
    await kvm.close()
  })

  test('closing a shmem mapping closes its memfd; the number is then free', async () => {
    const kvm = createEmulatorBackend()
    const shm = await kvm.mmap({ size: PAGE_SIZE, backing: 'shmem' })
    await shm.close()
    const e = await shm.close().catch((x: unknown) => x)
    expect(KvmError.is(e) && e.code === 'EBADF' && e.op === 'close').toBe(true)
    expect((await kvm.mmap({ size: PAGE_SIZE, backing: 'shmem' })).fd).toBe(shm.fd)
    await kvm.close()
  })
})
