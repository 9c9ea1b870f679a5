// Smoke test of the native backend against this machine's /dev/kvm: the calls every suite builds on.

import { afterAll, describe, expect, test } from 'vitest'

import { KVM_CAP_GUEST_MEMFD, KVM_CAP_GUEST_MEMFD_FLAGS, KVM_CAP_NR_MEMSLOTS, KVM_MEM_GUEST_MEMFD,
  KVM_MEM_LOG_DIRTY_PAGES, GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP } from '../../harness/uapi/kvm.ts'
import { UFFDIO_REGISTER_MODE_MISSING, UFFDIO_REGISTER_MODE_MINOR, _UFFDIO_COPY, _UFFDIO_CONTINUE } from '../../harness/uapi/userfaultfd.ts'
import { load, nativeBackend } from './spec-support.ts'

afterAll(async () => {
  if (load.available) await load.backend.close()
})

describe('native backend smoke', () => {
  test('system ioctls: API version 12, memslots, guest_memfd caps', async (ctx) => {
    const kvm = nativeBackend(ctx)
    expect(await kvm.getApiVersion()).toBe(12)
    expect(await kvm.checkExtension(KVM_CAP_NR_MEMSLOTS)).toBe(32764)
    expect(await kvm.checkExtension(KVM_CAP_GUEST_MEMFD)).toBe(1)
    const vm = await kvm.createVm()
    expect(await vm.checkExtension(KVM_CAP_GUEST_MEMFD_FLAGS)).toBe(3)
    expect(vm.fd).toBeGreaterThan(2)
    await vm.close()
  })

  test('info() describes this host', async (ctx) => {
    const info = await nativeBackend(ctx).info()
    expect(info.arch).toBe(process.arch === 'x64' ? 'x86_64' : info.arch)
    expect(info.pageSize).toBe(4096)
    expect(info.profile).toBeNull()
    expect(info.backings).toContain('anonymous')
    expect(info.features).toEqual(expect.arrayContaining(['host-faults', 'userfaultfd']))
  })

  test('memslot create and delete', async (ctx) => {
    const kvm = nativeBackend(ctx)
    const vm = await kvm.createVm()
    const mem = await kvm.mmap({ size: 1 << 20, backing: 'anonymous' })
    const region = { slot: 1, flags: 0, guestPhysAddr: 1n << 30n, memorySize: 1 << 20, userspaceAddr: mem.addr }
    await vm.setUserMemoryRegion(region)
    await vm.setUserMemoryRegion({ ...region, memorySize: 0 })
    await vm.setUserMemoryRegion2({ ...region, slot: 2 })
    await vm.setUserMemoryRegion2({ ...region, slot: 2, memorySize: 0 })
    await vm.close()
    await mem.close()
  })

  test('guest_memfd: create, bind, mmap, fill, read', async (ctx) => {
    const kvm = nativeBackend(ctx)
    const vm = await kvm.createVm()
    const size = 1 << 20
    const gmem = await vm.createGuestMemfd({ size, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED })
    expect((await gmem.stat()).size).toBe(BigInt(size))
    const map = await gmem.mmap({ length: size })
    expect(map.backing).toBe('guest_memfd')
    expect(map.fd).toBe(gmem.fd)
    await vm.setUserMemoryRegion2({
      slot: 1, flags: KVM_MEM_GUEST_MEMFD, guestPhysAddr: 1n << 30n, memorySize: size,
      userspaceAddr: map.addr, guestMemfd: gmem.fd, guestMemfdOffset: 0,
    })
    await map.fill(4096, 8192, 0x5a)
    expect(await map.read(4096, 4)).toEqual(new Uint8Array([0x5a, 0x5a, 0x5a, 0x5a]))
    expect(await map.findMismatch(0, size, 0)).toBe(4096n)
    expect(await map.findMismatch(4096, 8192, 0x5a)).toBe(-1n)
    await map.write(100, new Uint8Array([1, 2, 3]))
    expect(await map.read(99, 5)).toEqual(new Uint8Array([0, 1, 2, 3, 0]))
    await vm.close()
    await map.close()
    await gmem.close()
  })

  test('dirty log of a LOG_DIRTY_PAGES slot', async (ctx) => {
    const kvm = nativeBackend(ctx)
    const vm = await kvm.createVm()
    const mem = await kvm.mmap({ size: 100 * 4096, backing: 'anonymous' })
    await vm.setUserMemoryRegion({
      slot: 3, flags: KVM_MEM_LOG_DIRTY_PAGES, guestPhysAddr: 1n << 30n, memorySize: 100 * 4096, userspaceAddr: mem.addr,
    })
    const log = await vm.getDirtyLog(3)
    expect(log.byteLength).toBe(16) // ceil(100 / 64) words
    expect([...log].every((b) => b === 0)).toBe(true)
    await vm.close()
    await mem.close()
  })

  test('userfaultfd: API, MISSING on anonymous memory and MINOR on shmem', async (ctx) => {
    const kvm = nativeBackend(ctx)
    for (const via of ['syscall', 'dev'] as const) {
      const uffd = await kvm.openUffd({ via })
      const api = await uffd.api(0)
      expect(api.ioctls).not.toBe(0n)
      const anon = await kvm.mmap({ size: 4 * 4096, backing: 'anonymous' })
      const reg = await uffd.register({ start: anon.addr, len: anon.size }, UFFDIO_REGISTER_MODE_MISSING)
      expect(reg.ioctls & (1n << BigInt(_UFFDIO_COPY))).not.toBe(0n)
      expect(await uffd.copy({ dst: anon.addr, data: new Uint8Array(4096).fill(7) })).toBe(4096n)
      expect(await uffd.zeropage({ start: anon.addr + 4096n, len: 4096 })).toBe(4096n)
      expect(await anon.read(0, 2)).toEqual(new Uint8Array([7, 7]))
      expect(await uffd.readEvents()).toEqual([])
      await uffd.unregister({ start: anon.addr, len: anon.size })

      const shmem = await kvm.mmap({ size: 4 * 4096, backing: 'shmem' })
      expect(shmem.fd).not.toBeNull()
      const alias = await shmem.alias()
      await alias.fill(0, 4096, 9) // populate the page cache through the alias, as upstream does
      const minor = await uffd.register({ start: shmem.addr, len: shmem.size }, UFFDIO_REGISTER_MODE_MINOR)
      expect(minor.ioctls & (1n << BigInt(_UFFDIO_CONTINUE))).not.toBe(0n)
      expect(await uffd.continue({ start: shmem.addr, len: 4096 })).toBe(4096n)
      expect(await shmem.read(0, 1)).toEqual(new Uint8Array([9]))
      await Promise.all([uffd.close(), anon.close(), alias.close(), shmem.close()])
    }
  })

  test('a host read of a MISSING-registered page waits off the event loop until UFFDIO_COPY resolves it', async (ctx) => {
    const kvm = nativeBackend(ctx)
    const uffd = await kvm.openUffd({ via: 'syscall' })
    await uffd.api(0)
    const anon = await kvm.mmap({ size: 2 * 4096, backing: 'anonymous' })
    await uffd.register({ start: anon.addr, len: anon.size }, UFFDIO_REGISTER_MODE_MISSING)
    const reading = anon.read(4096 + 8, 4)
    let events = await uffd.readEvents()
    for (let i = 0; events.length === 0 && i < 200; i++) {
      await new Promise((r) => setTimeout(r, 5))
      events = await uffd.readEvents()
    }
    expect(events).toEqual([{ kind: 'pagefault', address: anon.addr + 4096n, flags: 0n }])
    await uffd.copy({ dst: anon.addr + 4096n, data: new Uint8Array(4096).fill(0x3c) })
    expect(await reading).toEqual(new Uint8Array([0x3c, 0x3c, 0x3c, 0x3c]))
    await Promise.all([uffd.close(), anon.close()])
  })

  test('userfault bitmap words', async (ctx) => {
    const kvm = nativeBackend(ctx)
    const bm = await kvm.createUserfaultBitmap(130)
    expect(bm.addr % 4096n).toBe(0n)
    await bm.set(0)
    await bm.set(129)
    expect(await bm.test(129)).toBe(true)
    expect([...(await bm.words())]).toEqual([1n, 0n, 2n])
    await bm.clear(0)
    await bm.fill(true)
    expect([...(await bm.words())]).toEqual([2n ** 64n - 1n, 2n ** 64n - 1n, 3n])
    await bm.close()
  })
})
