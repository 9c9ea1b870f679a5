// Ground truths measured on this project's hosts (kernel 6.18, kvm_pvm) through the native backend.
// They pin what the real kernel answers where the emulator and the ported suites need a fact, not a
// guess. Each case names the kernel rule it exercises; a control shows the refusal is that rule's.

import { afterAll, describe, expect, test } from 'vitest'

import type { Backend, GuestMemfd, HostMapping, Vm } from '../../harness/backend.ts'
import { expectErrno, expectOk } from '../../harness/expect-errno.ts'
import {
  GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, KVM_CAP_DISABLE_QUIRKS2, KVM_MEM_GUEST_MEMFD,
  KVM_MEM_LOG_DIRTY_PAGES, KVM_X86_QUIRK_SLOT_ZAP_ALL, KVM_X86_SW_PROTECTED_VM,
} from '../../harness/uapi/kvm.ts'
import { load, nativeBackend } from './spec-support.ts'

const FALLOC_FL_KEEP_SIZE = 0x01
const FALLOC_FL_PUNCH_HOLE = 0x02
const MiB = 1 << 20

afterAll(async () => {
  if (load.available) await load.backend.close()
})

async function gmemVm(kvm: Backend): Promise<{ vm: Vm; gmem: GuestMemfd; mem: HostMapping }> {
  const vm = await kvm.createVm()
  const gmem = await vm.createGuestMemfd({ size: MiB, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED })
  const mem = await kvm.mmap({ size: MiB, backing: 'anonymous' })
  return { vm, gmem, mem }
}

describe('ground truths of this host', () => {
  test('(a) binding a guest_memfd range another slot binds: EINVAL (kvm_gmem_bind)', async (ctx) => {
    const kvm = nativeBackend(ctx)
    const { vm, gmem, mem } = await gmemVm(kvm)
    const slot = (n: number, gpa: bigint, size: number, offset: number, fd = gmem.fd) => ({
      slot: n, flags: KVM_MEM_GUEST_MEMFD, guestPhysAddr: gpa, memorySize: size, userspaceAddr: mem.addr,
      guestMemfd: fd, guestMemfdOffset: offset,
    })
    await expectOk(vm.setUserMemoryRegion2(slot(1, 1n << 30n, MiB / 2, 0)), 'bind [0, 512 KiB) to slot 1')
    await expectErrno(vm.setUserMemoryRegion2(slot(2, 2n << 30n, MiB / 2, 0)), 'EINVAL', 'the same range to slot 2')
    await expectErrno(vm.setUserMemoryRegion2(slot(2, 2n << 30n, MiB / 2, MiB / 4)), 'EINVAL', 'a half-overlapping range')
    // Control: the rest of the file binds to another slot at another GPA.
    await expectOk(vm.setUserMemoryRegion2(slot(2, 2n << 30n, MiB / 2, MiB / 2)), 'the disjoint range to slot 2')
    await vm.close()
  })

  test('(b) read/write: EINVAL (no read/write ops); pread/pwrite: ESPIPE (FMODE_PREAD unset)', async (ctx) => {
    const { vm, gmem } = await gmemVm(nativeBackend(ctx))
    await expectErrno(gmem.read(4096), 'EINVAL', 'read(guest_memfd, 4096)')
    await expectErrno(gmem.write(new Uint8Array(4096)), 'EINVAL', 'write(guest_memfd, 4096)')
    await expectErrno(gmem.pread(4096, 0), 'ESPIPE', 'pread(guest_memfd, 4096, 0)')
    await expectErrno(gmem.pwrite(new Uint8Array(4096), 0), 'ESPIPE', 'pwrite(guest_memfd, 4096, 0)')
    await vm.close()
  })

  test('(c) mmap without GUEST_MEMFD_FLAG_MMAP: ENODEV; (d) MAP_PRIVATE with it: EINVAL', async (ctx) => {
    const kvm = nativeBackend(ctx)
    const { vm, gmem } = await gmemVm(kvm)
    const plain = await vm.createGuestMemfd({ size: MiB })
    await expectErrno(plain.mmap({ length: 4096 }), 'ENODEV', 'mmap of a guest_memfd without MMAP')
    await expectErrno(gmem.mmap({ length: 4096, shared: false }), 'EINVAL', 'MAP_PRIVATE of a guest_memfd')
    await vm.close()
  })

  test('(e) KVM_CREATE_GUEST_MEMFD with a non-zero reserved word: accepted (reserved[] is not checked)', async (ctx) => {
    const vm = await nativeBackend(ctx).createVm()
    for (let i = 0; i < 6; i++) {
      const reserved = [0, 0, 0, 0, 0, 0]
      reserved[i] = 1
      const gmem = await expectOk(vm.createGuestMemfd({ size: 4096, reserved }), `reserved[${i}] = 1`)
      expect((await gmem.stat()).size).toBe(4096n)
      await gmem.close()
    }
    await vm.close()
  })

  test('(f) userspace_addr + memory_size past TASK_SIZE_MAX (0x7ffffffff000): EINVAL (access_ok)', async (ctx) => {
    const vm = await nativeBackend(ctx).createVm()
    const region = (slot: number, hva: bigint, size: number) =>
      ({ slot, flags: 0, guestPhysAddr: BigInt(slot) << 30n, memorySize: size, userspaceAddr: hva })
    await expectErrno(vm.setUserMemoryRegion2(region(1, 0x7ffffffff000n, 4096)), 'EINVAL', 'hva 0x7ffffffff000 size 4096')
    await expectErrno(vm.setUserMemoryRegion2(region(2, 0x7fffffffe000n, 8192)), 'EINVAL', 'hva 0x7fffffffe000 size 8192')
    await expectErrno(vm.setUserMemoryRegion2(region(3, 0x800000000000n, 4096)), 'EINVAL', 'hva 0x800000000000 size 4096')
    // Control: the last page below TASK_SIZE_MAX is a valid (unmapped) userspace range.
    await expectOk(vm.setUserMemoryRegion2(region(4, 0x7fffffffe000n, 4096)), 'hva 0x7fffffffe000 size 4096')
    await vm.close()
  })

  test('(g) KVM_GET_DIRTY_LOG without LOG_DIRTY_PAGES and on a missing slot: ENOENT', async (ctx) => {
    const kvm = nativeBackend(ctx)
    const vm = await kvm.createVm()
    const mem = await kvm.mmap({ size: 64 * 4096, backing: 'anonymous' })
    await vm.setUserMemoryRegion({ slot: 1, flags: 0, guestPhysAddr: 1n << 30n, memorySize: 64 * 4096, userspaceAddr: mem.addr })
    await expectErrno(vm.getDirtyLog(1), 'ENOENT', 'dirty log of a slot without LOG_DIRTY_PAGES')
    await expectErrno(vm.getDirtyLog(7), 'ENOENT', 'dirty log of a missing slot')
    await vm.setUserMemoryRegion({ slot: 2, flags: KVM_MEM_LOG_DIRTY_PAGES, guestPhysAddr: 2n << 30n, memorySize: 64 * 4096, userspaceAddr: mem.addr })
    expect((await expectOk(vm.getDirtyLog(2), 'control: a LOG_DIRTY_PAGES slot')).byteLength).toBe(8)
    await vm.close()
    await mem.close()
  })

  test('(h) KVM_CAP_DISABLE_QUIRKS2 = 0x5ff (SLOT_ZAP_ALL included); disabling 1 << 7 succeeds', async (ctx) => {
    const kvm = nativeBackend(ctx)
    const vm = await kvm.createVm()
    expect(await kvm.checkExtension(KVM_CAP_DISABLE_QUIRKS2)).toBe(0x5ff)
    expect(await vm.checkExtension(KVM_CAP_DISABLE_QUIRKS2)).toBe(0x5ff)
    expect(await vm.enableCap(KVM_CAP_DISABLE_QUIRKS2, [KVM_X86_QUIRK_SLOT_ZAP_ALL])).toBe(0)
    await vm.close()
  })

  test('(i) KVM_CREATE_VM(KVM_X86_SW_PROTECTED_VM): EINVAL (KVM_CAP_VM_TYPES = 1)', async (ctx) => {
    await expectErrno(nativeBackend(ctx).createVm({ type: KVM_X86_SW_PROTECTED_VM }), 'EINVAL', 'KVM_CREATE_VM(1)')
  })

  test('(j) fallocate mode 0 and PUNCH_HOLE without KEEP_SIZE: EOPNOTSUPP (kvm_gmem_fallocate)', async (ctx) => {
    const { vm, gmem } = await gmemVm(nativeBackend(ctx))
    await expectErrno(gmem.fallocate(0, 0, 4096), 'EOPNOTSUPP', 'fallocate(mode 0)')
    await expectErrno(gmem.fallocate(FALLOC_FL_PUNCH_HOLE, 0, 4096), 'EOPNOTSUPP', 'fallocate(PUNCH_HOLE)')
    await expectOk(gmem.fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096), 'control: PUNCH_HOLE | KEEP_SIZE')
    await vm.close()
  })

  test('(k) guest_memfd of size 0 and of size 2^63: EINVAL', async (ctx) => {
    const vm = await nativeBackend(ctx).createVm()
    await expectErrno(vm.createGuestMemfd({ size: 0 }), 'EINVAL', 'size 0')
    await expectErrno(vm.createGuestMemfd({ size: 1n << 63n }), 'EINVAL', 'size 2^63')
    await vm.close()
  })

  test('host faults: SIGBUS past EOF and on a guest_memfd without INIT_SHARED, at the first faulting byte', async (ctx) => {
    const kvm = nativeBackend(ctx)
    const vm = await kvm.createVm()
    const shared = await vm.createGuestMemfd({ size: MiB, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED })
    const map = await shared.mmap({ length: 2 * MiB })
    await map.fill(0, MiB, 1)
    await expect(map.read(MiB + 100, 16)).rejects.toMatchObject({ name: 'HostFault', code: 'SIGBUS', op: 'read', address: map.addr + BigInt(MiB + 100) })
    // An access that starts in the file and runs past its end faults at the end of the file.
    await expect(map.fill(MiB - 8, 16, 2)).rejects.toMatchObject({ code: 'SIGBUS', address: map.addr + BigInt(MiB) })
    const priv = await vm.createGuestMemfd({ size: MiB, flags: GUEST_MEMFD_FLAG_MMAP })
    const pmap = await priv.mmap({ length: MiB })
    await expect(pmap.write(8192, new Uint8Array(8))).rejects.toMatchObject({ code: 'SIGBUS', op: 'write', address: pmap.addr + 8192n })
    await expect(pmap.findMismatch(0, 4096, 0)).rejects.toMatchObject({ code: 'SIGBUS', op: 'findMismatch', address: pmap.addr })
    await vm.close()
  })
})
