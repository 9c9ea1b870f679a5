// No leaks: 1,000 cycles of VM + memslot + guest_memfd + vCPU + close return the process to the fds
// it started with, the addon's handle tables to empty, and RSS to within 64 MiB.

import { afterAll, describe, expect, test } from 'vitest'

import { GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, KVM_MEM_GUEST_MEMFD } from '../../harness/uapi/kvm.ts'
import { requireAddon } from './addon.ts'
import { load, nativeBackend, openFdCount } from './spec-support.ts'

afterAll(async () => {
  if (load.available) await load.backend.close()
})

describe('native backend leaks', () => {
  test('1,000 create/close cycles', async (ctx) => {
    const kvm = nativeBackend(ctx)
    const addon = requireAddon()
    const mem = await kvm.mmap({ size: 64 * 1024, backing: 'anonymous' })
    // One warm-up cycle so that lazily created things (KVM's module state, V8's code) are not counted.
    const cycle = async (i: number) => {
      const vm = await kvm.createVm()
      await vm.setUserMemoryRegion({ slot: 0, flags: 0, guestPhysAddr: 0, memorySize: 64 * 1024, userspaceAddr: mem.addr })
      const gmem = await vm.createGuestMemfd({ size: 64 * 1024, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED })
      const map = await gmem.mmap({ length: 64 * 1024 })
      await vm.setUserMemoryRegion2({
        slot: 1, flags: KVM_MEM_GUEST_MEMFD, guestPhysAddr: 1n << 30n, memorySize: 64 * 1024,
        userspaceAddr: map.addr, guestMemfd: gmem.fd, guestMemfdOffset: 0,
      })
      await map.fill(0, 4096, i & 0xff)
      await vm.createVcpu(0)
      await map.close()
      await gmem.close()
      await vm.close() // closes the vCPU too
    }
    await cycle(0)
    const fdsBefore = await openFdCount()
    const countsBefore = addon.counts()
    const rssBefore = process.memoryUsage.rss()
    for (let i = 1; i <= 1000; i++) await cycle(i)
    expect(await openFdCount()).toBe(fdsBefore)
    expect(addon.counts()).toEqual(countsBefore)
    const grown = process.memoryUsage.rss() - rssBefore
    expect(grown, `RSS grew by ${(grown / 2 ** 20).toFixed(1)} MiB`).toBeLessThan(64 * 2 ** 20)
    await mem.close()
  }, 120_000)
})
