// The contract as a whole: info, loading, fd numbering, the VM ioctls without a rule file of their own,
// the userfault bitmap, closed handles (the "faulty handle" test) and argument checking.

import { describe, expect, test } from 'vitest'
import type { Backend } from '../../harness/backend.ts'
import { KvmError } from '../../harness/errors.ts'
import {
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  KVM_CAP_DISABLE_QUIRKS2,
  KVM_CAP_USER_MEMORY2,
  KVM_X86_QUIRK_SLOT_ZAP_ALL,
  KVM_X86_SEV_VM,
  KVM_X86_SW_PROTECTED_VM,
} from '../../harness/uapi/kvm.ts'
import { createEmulatorBackend, loadEmulator, vmStateOf } from './index.ts'

describe('the backend', () => {
  test('info() names the emulator and its profile', async () => {
    const kvm = createEmulatorBackend({ profile: 'pvm-6.18' })
    expect(kvm.name).toBe('emulator')
    expect(await kvm.info()).toMatchObject({
      kernelRelease: 'emulator (pvm-6.18)',
      arch: 'x86_64',
      pageSize: 4096,
      profile: 'pvm-6.18',
      features: ['vcpu', 'userfaultfd', 'demand-paging'],
    })
    expect(typeof (await kvm.info()).host).toBe('string')
    expect(await kvm.getApiVersion()).toBe(12)
  })

  test('loadEmulator() is always available; an unknown profile throws', () => {
    const load = loadEmulator()
    expect(load.available).toBe(true)
    if (load.available) expect(load.backend.name).toBe('emulator')
    expect(() => loadEmulator({ profile: 'nope' })).toThrow(/known profiles: upstream-6.18, pvm-6.18/)
  })

  test('fds number like a process: /dev/kvm is 3, then the lowest free number', async () => {
    const kvm = createEmulatorBackend()
    expect(kvm.systemFd).toBe(3)
    const vm1 = await kvm.createVm()
    const vm2 = await kvm.createVm()
    expect([vm1.fd, vm2.fd]).toEqual([4, 5])
    await vm1.close()
    const gmem = await vm2.createGuestMemfd({ size: 4096 })
    expect(gmem.fd).toBe(4)
  })

  test('KVM_CREATE_VM: types the profile lacks are EINVAL', async () => {
    const kvm = createEmulatorBackend()
    await expect(kvm.createVm({ type: KVM_X86_SEV_VM })).rejects.toMatchObject({ code: 'EINVAL', op: 'KVM_CREATE_VM' })
    expect((await kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM })).type).toBe(KVM_X86_SW_PROTECTED_VM)
    const pvm = createEmulatorBackend({ profile: 'pvm-6.18' })
    await expect(pvm.createVm({ type: KVM_X86_SW_PROTECTED_VM })).rejects.toMatchObject({ code: 'EINVAL' })
  })

  test('userfaultfd: the lowest free fd; bad flags EINVAL; EBADF once the backend is closed', async () => {
    const kvm = createEmulatorBackend()
    const uffd = await kvm.openUffd({ via: 'syscall' })
    expect(uffd.fd).toBe(kvm.systemFd + 1)
    await expect(kvm.openUffd({ via: 'dev', flags: 2 })).rejects.toMatchObject({ code: 'EINVAL', op: 'USERFAULTFD_IOC_NEW' })
    await kvm.close()
    await expect(kvm.openUffd({ via: 'syscall' })).rejects.toMatchObject({ code: 'EBADF', op: 'userfaultfd' })
    await expect(uffd.api(0)).rejects.toMatchObject({ code: 'EBADF', op: 'UFFDIO_API' })
  })

  test('close() frees every VM, fd and mapping; the system fd is then EBADF', async () => {
    const kvm = createEmulatorBackend()
    const vm = await kvm.createVm()
    const gmem = await vm.createGuestMemfd({ size: 4096, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED })
    const gmap = await gmem.mmap({ length: 4096 })
    const shm = await kvm.mmap({ size: 4096, backing: 'shmem' })
    const vcpu = await vm.createVcpu(0)
    await vcpu.loadProgram({ steps: [{ op: 'jump', to: 0 }] })
    const running = vcpu.run()
    await kvm.close()
    expect(await running).toEqual({ kind: 'intr' })
    await expect(vcpu.run()).rejects.toMatchObject({ code: 'EBADF', op: 'KVM_RUN' })
    await expect(vm.checkExtension(KVM_CAP_USER_MEMORY2)).rejects.toMatchObject({ code: 'EBADF' })
    await expect(gmem.stat()).rejects.toMatchObject({ code: 'EBADF' })
    await expect(gmap.read(0, 1)).rejects.toMatchObject({ code: 'SIGSEGV' })
    await expect(shm.read(0, 1)).rejects.toMatchObject({ code: 'SIGSEGV' })
    await expect(kvm.checkExtension(KVM_CAP_USER_MEMORY2)).rejects.toMatchObject({ code: 'EBADF' })
    await expect(kvm.createVm()).rejects.toMatchObject({ code: 'EBADF', op: 'KVM_CREATE_VM' })
    await expect(kvm.close()).resolves.toBeUndefined()
  })
})

describe('VM ioctls', () => {
  test('KVM_ENABLE_CAP: flags, unknown caps and unsupported quirks are EINVAL; quirks are recorded', async () => {
    const kvm = createEmulatorBackend()
    const vm = await kvm.createVm()
    const state = vmStateOf(vm)
    expect(state.slotZapAll).toBe(true)
    await expect(vm.enableCap(KVM_CAP_DISABLE_QUIRKS2, [KVM_X86_QUIRK_SLOT_ZAP_ALL], 1)).rejects.toMatchObject({ code: 'EINVAL', op: 'KVM_ENABLE_CAP' })
    await expect(vm.enableCap(KVM_CAP_DISABLE_QUIRKS2, [1 << 10])).rejects.toMatchObject({ code: 'EINVAL' })
    await expect(vm.enableCap(KVM_CAP_USER_MEMORY2)).rejects.toMatchObject({ code: 'EINVAL' })
    expect(await vm.enableCap(KVM_CAP_DISABLE_QUIRKS2, [KVM_X86_QUIRK_SLOT_ZAP_ALL])).toBe(0)
    expect(state.slotZapAll).toBe(false)
    expect(await vm.enableCap(KVM_CAP_DISABLE_QUIRKS2, [0])).toBe(0)
    expect(state.disabledQuirks).toBe(KVM_X86_QUIRK_SLOT_ZAP_ALL)
    // pvm-6.18 (6.18.y) also knows quirk bit 10 (measured).
    const pvm = await createEmulatorBackend({ profile: 'pvm-6.18' }).createVm()
    expect(await pvm.enableCap(KVM_CAP_DISABLE_QUIRKS2, [1 << 10])).toBe(0)
    await expect(pvm.enableCap(KVM_CAP_DISABLE_QUIRKS2, [1 << 9])).rejects.toMatchObject({ code: 'EINVAL' })
  })

  test('KVM_SET_NR_MMU_PAGES: fewer than 64 is EINVAL', async () => {
    const vm = await createEmulatorBackend().createVm()
    await expect(vm.setNrMmuPages(63)).rejects.toMatchObject({ code: 'EINVAL', op: 'KVM_SET_NR_MMU_PAGES' })
    await expect(vm.setNrMmuPages(64)).resolves.toBeUndefined()
    expect(vmStateOf(vm).nrMmuPages).toBe(64n)
  })
})

describe('the userfault bitmap', () => {
  test('ceil(npages/64) words in host memory; set/clear/test/fill as KVM reads them', async () => {
    const kvm = createEmulatorBackend()
    const bitmap = await kvm.createUserfaultBitmap(130)
    expect(bitmap.npages).toBe(130)
    expect(bitmap.addr % 4096n).toBe(0n)
    expect(await bitmap.words()).toEqual(new BigUint64Array(3))
    await bitmap.set(0)
    await bitmap.set(64)
    await bitmap.set(129)
    await bitmap.set(129)
    expect([...(await bitmap.words())]).toEqual([1n, 1n, 2n])
    expect(await bitmap.test(64)).toBe(true)
    await bitmap.clear(64)
    expect(await bitmap.test(64)).toBe(false)
    await bitmap.fill(true)
    expect([...(await bitmap.words())]).toEqual([2n ** 64n - 1n, 2n ** 64n - 1n, 3n])
    await bitmap.fill(false)
    expect([...(await bitmap.words())]).toEqual([0n, 0n, 0n])
    await expect(bitmap.set(130)).rejects.toThrow(RangeError)
    await expect(kvm.createUserfaultBitmap(0)).rejects.toMatchObject({ code: 'EINVAL' })
    await bitmap.close()
    await expect(bitmap.test(0)).rejects.toMatchObject({ name: 'HostFault', code: 'SIGSEGV' })
  })
})

describe('faulty handles: every method of a closed handle', () => {
  async function expectAll(calls: [string, () => Promise<unknown>][], code: string): Promise<void> {
    for (const [op, call] of calls) {
      const e = await call().then(
        () => undefined,
        (x: unknown) => x,
      )
      expect(e, op).toMatchObject({ code })
      if (code === 'EBADF') expect(KvmError.is(e) && e.op === op, `${op}: op is ${(e as KvmError).op}`).toBe(true)
    }
  }

  test('a closed Vm is EBADF from every method', async () => {
    const kvm = createEmulatorBackend()
    const vm = await kvm.createVm()
    await vm.close()
    await expectAll(
      [
        ['KVM_CHECK_EXTENSION', () => vm.checkExtension(KVM_CAP_USER_MEMORY2)],
        ['KVM_ENABLE_CAP', () => vm.enableCap(KVM_CAP_DISABLE_QUIRKS2, [0])],
        ['KVM_SET_USER_MEMORY_REGION', () => vm.setUserMemoryRegion({ slot: 0, flags: 0, guestPhysAddr: 0, memorySize: 4096, userspaceAddr: 0 })],
        ['KVM_SET_USER_MEMORY_REGION2', () => vm.setUserMemoryRegion2({ slot: 0, flags: 0, guestPhysAddr: 0, memorySize: 4096, userspaceAddr: 0 })],
        ['KVM_CREATE_GUEST_MEMFD', () => vm.createGuestMemfd({ size: 4096 })],
        ['KVM_SET_MEMORY_ATTRIBUTES', () => vm.setMemoryAttributes({ address: 0, size: 4096, attributes: 0 })],
        ['KVM_GET_DIRTY_LOG', () => vm.getDirtyLog(0)],
        ['KVM_SET_NR_MMU_PAGES', () => vm.setNrMmuPages(64)],
        ['KVM_CREATE_VCPU', () => vm.createVcpu(0)],
        ['close', () => vm.close()],
      ],
      'EBADF',
    )
  })

  test('a guest_memfd outlives its VM fd (the file holds the VM), then its own close makes it EBADF', async () => {
    const kvm = createEmulatorBackend()
    const vm = await kvm.createVm()
    const gmem = await vm.createGuestMemfd({ size: 4096, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED })
    await vm.setUserMemoryRegion2({ slot: 0, flags: 4, guestPhysAddr: 0, memorySize: 4096, userspaceAddr: 0, guestMemfd: gmem.fd })
    const state = vmStateOf(vm)
    await vm.close()
    expect(state.destroyed).toBe(false)
    expect((await gmem.stat()).size).toBe(4096n)
    await gmem.fallocate(1, 0, 4096)
    const other = await kvm.createVm()
    await expect(
      other.setUserMemoryRegion2({ slot: 0, flags: 4, guestPhysAddr: 0, memorySize: 4096, userspaceAddr: 0, guestMemfd: gmem.fd }),
    ).rejects.toMatchObject({ code: 'EINVAL' })
    await gmem.close()
    expect(state.destroyed).toBe(true)
    await expectAll(
      [
        ['fstat', () => gmem.stat()],
        ['fallocate', () => gmem.fallocate(1, 0, 4096)],
        ['mmap', () => gmem.mmap({ length: 4096 })],
        ['close', () => gmem.close()],
      ],
      'EBADF',
    )
  })

  test('a closed HostMapping: accesses are SIGSEGV, alias is EBADF, madvise ENOMEM', async () => {
    const kvm: Backend = createEmulatorBackend()
    const m = await kvm.mmap({ size: 4096, backing: 'shmem' })
    await m.close()
    await expectAll(
      [
        ['HostMapping.read', () => m.read(0, 1)],
        ['HostMapping.write', () => m.write(0, Uint8Array.of(1))],
        ['HostMapping.fill', () => m.fill(0, 1, 0)],
        ['HostMapping.findMismatch', () => m.findMismatch(0, 1, 0)],
      ],
      'SIGSEGV',
    )
    await expectAll([['mmap', () => m.alias()], ['close', () => m.close()]], 'EBADF')
    await expect(m.madvise(4)).rejects.toMatchObject({ code: 'ENOMEM' })
  })
})

describe('arguments: what no C caller could pass is a TypeError, not an errno', () => {
  test('u64 fields take 0..2^64-1 as bigint or safe integers; u32 fields take either spelling', async () => {
    const vm = await createEmulatorBackend().createVm()
    const r = { slot: 0, flags: 0, guestPhysAddr: 0, memorySize: 4096, userspaceAddr: 0 }
    await expect(vm.setUserMemoryRegion({ ...r, guestPhysAddr: -4096 })).rejects.toThrow(TypeError)
    await expect(vm.setUserMemoryRegion({ ...r, guestPhysAddr: 1n << 64n })).rejects.toThrow(TypeError)
    await expect(vm.setUserMemoryRegion({ ...r, memorySize: 2 ** 60 })).rejects.toThrow(TypeError)
    await expect(vm.setUserMemoryRegion({ ...r, memorySize: 4096.5 })).rejects.toThrow(TypeError)
    await expect(vm.setUserMemoryRegion({ ...r, slot: 2 ** 32 })).rejects.toThrow(TypeError)
    await expect(vm.setUserMemoryRegion2({ ...r, pad2: new Array(14).fill(0) })).rejects.toThrow(TypeError)
    // (u32)-1 and 1 << 31 are what C callers write
    await expect(vm.setUserMemoryRegion({ ...r, slot: -1 })).rejects.toMatchObject({ code: 'EINVAL' })
    await expect(vm.setUserMemoryRegion({ ...r, flags: 1 << 31 })).rejects.toMatchObject({ code: 'EINVAL' })
    // padding is not validated by the kernel
    await expect(vm.setUserMemoryRegion2({ ...r, pad1: 7, pad2: [1, 2, 3], userfaultBitmap: 0x1000 })).resolves.toBeUndefined()
  })
})
