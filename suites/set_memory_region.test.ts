// Port of tools/testing/selftests/kvm/set_memory_region_test.c: the cases that need no vCPU.
// (upstream-selftests.md §C.) Test names are the upstream function names.

import { requires, supportedVmTypes } from '../harness/gating.ts'
import { expectErrno, expectOk } from '../harness/expect-errno.ts'
import { describe, expect, test } from '../harness/test.ts'
import {
  KVM_CAP_GUEST_MEMFD,
  KVM_CAP_MEMORY_ATTRIBUTES,
  KVM_CAP_NR_MEMSLOTS,
  KVM_MEM_GUEST_MEMFD,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_READONLY,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  KVM_X86_DEFAULT_VM,
  KVM_X86_SW_PROTECTED_VM,
} from '../harness/uapi/kvm.ts'

const MEM_REGION_SIZE = 0x200000
const MEM_REGION_GPA = 0xc0000000
const MEM_REGION_SLOT = 10
const PAGE_SIZE = 4096

const hex = (n: number | bigint) => `0x${n.toString(16)}`

describe('set_memory_region_test', () => {
  test('test_invalid_memory_region_flags', async ({ kvm }) => {
    // x86 supports dirty logging and read-only memory on every VM type this suite creates.
    let supported = KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY
    // Upstream counts GUEST_MEMFD as supported only where private memory is (memory attributes).
    const attrs = BigInt(await kvm.checkExtension(KVM_CAP_MEMORY_ATTRIBUTES))
    if (attrs & KVM_MEMORY_ATTRIBUTE_PRIVATE) supported |= KVM_MEM_GUEST_MEMFD
    // Flags that only KVM_SET_USER_MEMORY_REGION2 accepts.
    const v2Only = KVM_MEM_GUEST_MEMFD

    const types = await supportedVmTypes(kvm)
    const type = types.includes(KVM_X86_SW_PROTECTED_VM) ? KVM_X86_SW_PROTECTED_VM : KVM_X86_DEFAULT_VM
    const vm = await kvm.createVm({ type })
    const region = { slot: 0, guestPhysAddr: 0, memorySize: MEM_REGION_SIZE, userspaceAddr: 0 }

    for (let i = 0; i < 32; i++) {
      const flag = (1 << i) >>> 0
      if (supported & flag && !(v2Only & flag)) continue

      await expectErrno(
        vm.setUserMemoryRegion({ ...region, flags: flag }),
        'EINVAL',
        `KVM_SET_USER_MEMORY_REGION with flags ${hex(flag)}`,
      )
      if (supported & flag) continue

      await expectErrno(
        vm.setUserMemoryRegion2({ ...region, flags: flag, guestMemfd: 0, guestMemfdOffset: 0 }),
        'EINVAL',
        `KVM_SET_USER_MEMORY_REGION2 with flags ${hex(flag)}`,
      )
    }

    if (!(supported & KVM_MEM_GUEST_MEMFD)) return

    const gmem = await vm.createGuestMemfd({ size: MEM_REGION_SIZE })
    const gmemRegion = { ...region, guestMemfd: gmem.fd, guestMemfdOffset: 0 }
    // Dirty logging of private memory is not supported.
    await expectErrno(
      vm.setUserMemoryRegion2({ ...gmemRegion, flags: KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_GUEST_MEMFD }),
      'EINVAL',
      'KVM_SET_USER_MEMORY_REGION2 with LOG_DIRTY_PAGES | GUEST_MEMFD',
    )
    // Read-only guest_memfd memslots are not supported.
    await expectErrno(
      vm.setUserMemoryRegion2({ ...gmemRegion, flags: KVM_MEM_READONLY | KVM_MEM_GUEST_MEMFD }),
      'EINVAL',
      'KVM_SET_USER_MEMORY_REGION2 with READONLY | GUEST_MEMFD',
    )
  })

  test('test_add_max_memory_regions', async ({ kvm }) => {
    const max = await kvm.checkExtension(KVM_CAP_NR_MEMSLOTS)
    expect(max, 'KVM_CAP_NR_MEMSLOTS should be greater than 0').toBeGreaterThan(0)

    const vm = await kvm.createVm()
    const mem = await kvm.mmap({ size: BigInt(max) * BigInt(MEM_REGION_SIZE), backing: 'anonymous' })

    for (let slot = 0; slot < max; slot++) {
      const offset = BigInt(slot) * BigInt(MEM_REGION_SIZE)
      await expectOk(
        vm.setUserMemoryRegion({
          slot,
          flags: 0,
          guestPhysAddr: offset,
          memorySize: MEM_REGION_SIZE,
          userspaceAddr: mem.addr + offset,
        }),
        `KVM_SET_USER_MEMORY_REGION of slot ${slot} (of ${max} allowed)`,
      )
    }

    // One slot more than KVM_CAP_NR_MEMSLOTS allows.
    const extra = await kvm.mmap({ size: MEM_REGION_SIZE, backing: 'anonymous' })
    await expectErrno(
      vm.setUserMemoryRegion({
        slot: max,
        flags: 0,
        guestPhysAddr: BigInt(max) * BigInt(MEM_REGION_SIZE),
        memorySize: MEM_REGION_SIZE,
        userspaceAddr: extra.addr,
      }),
      'EINVAL',
      `KVM_SET_USER_MEMORY_REGION of slot ${max} (KVM_CAP_NR_MEMSLOTS = ${max})`,
    )
  })

  test('test_add_private_memory_region', async ({ kvm, skip }) => {
    await requires({ kvm, skip }, { cap: KVM_CAP_GUEST_MEMFD }, { vmType: KVM_X86_SW_PROTECTED_VM })

    const vm = await kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM })
    const region = {
      slot: MEM_REGION_SLOT,
      flags: KVM_MEM_GUEST_MEMFD,
      guestPhysAddr: MEM_REGION_GPA,
      memorySize: MEM_REGION_SIZE,
      userspaceAddr: 0,
      guestMemfdOffset: 0,
    }
    const bind = (guestMemfd: number, guestMemfdOffset = 0) =>
      vm.setUserMemoryRegion2({ ...region, guestMemfd, guestMemfdOffset })

    await expectErrno(bind(kvm.systemFd), 'EINVAL', 'binding the /dev/kvm fd as guest_memfd')
    await expectErrno(bind(vm.fd), 'EINVAL', 'binding the VM fd as guest_memfd')

    const memfd = await kvm.mmap({ size: MEM_REGION_SIZE, backing: 'shmem' })
    expect(memfd.fd, 'a shmem mapping carries its memfd').not.toBeNull()
    await expectErrno(bind(memfd.fd ?? -1), 'EINVAL', 'binding a regular memfd as guest_memfd')

    const otherVm = await kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM })
    const otherGmem = await otherVm.createGuestMemfd({ size: MEM_REGION_SIZE })
    await expectErrno(bind(otherGmem.fd), 'EINVAL', "binding another VM's guest_memfd")
    // The same guest_memfd binds fine on the VM that created it.
    await expectOk(
      otherVm.setUserMemoryRegion2({ ...region, guestMemfd: otherGmem.fd }),
      "binding another VM's guest_memfd to that VM",
    )

    const gmem = await vm.createGuestMemfd({ size: MEM_REGION_SIZE })
    for (let offset = 1; offset < PAGE_SIZE; offset++) {
      await expectErrno(bind(gmem.fd, offset), 'EINVAL', `binding guest_memfd at unaligned offset ${offset}`)
    }
    await expectOk(bind(gmem.fd, 0), 'binding guest_memfd at offset 0')
  })

  test('test_add_overlapping_private_memory_regions', async ({ kvm, skip }) => {
    await requires({ kvm, skip }, { cap: KVM_CAP_GUEST_MEMFD }, { vmType: KVM_X86_SW_PROTECTED_VM })

    const vm = await kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM })
    const gmem = await vm.createGuestMemfd({ size: MEM_REGION_SIZE * 4 })
    const slot = (slot: number, gpa: number, size: number, offset: number) =>
      vm.setUserMemoryRegion2({
        slot,
        flags: KVM_MEM_GUEST_MEMFD,
        guestPhysAddr: gpa,
        memorySize: size,
        userspaceAddr: 0,
        guestMemfd: size === 0 ? -1 >>> 0 : gmem.fd,
        guestMemfdOffset: offset,
      })

    await expectOk(slot(MEM_REGION_SLOT, MEM_REGION_GPA, MEM_REGION_SIZE * 2, 0), 'slot 10 at 0xc0000000')
    await expectOk(
      slot(MEM_REGION_SLOT + 1, MEM_REGION_GPA * 2, MEM_REGION_SIZE * 2, MEM_REGION_SIZE * 2),
      'slot 11 at 0x180000000, offset 4 MiB',
    )
    // Delete slot 10, then try to recreate it over the front and the back half of slot 11.
    await expectOk(slot(MEM_REGION_SLOT, MEM_REGION_GPA, 0, 0), 'deleting slot 10')
    await expectErrno(
      slot(MEM_REGION_SLOT, MEM_REGION_GPA * 2 - MEM_REGION_SIZE, MEM_REGION_SIZE * 2, 0),
      'EEXIST',
      'slot 10 overlapping the front half of slot 11',
    )
    await expectErrno(
      slot(MEM_REGION_SLOT, MEM_REGION_GPA * 2 + MEM_REGION_SIZE, MEM_REGION_SIZE * 2, 0),
      'EEXIST',
      'slot 10 overlapping the back half of slot 11',
    )
  })
})
