// The KVM Userfault series' rules (userfault.ts has the table) on the userfault-v2 and userfault-v3
// profiles, and that upstream-6.18 has none of them. Where the versions agree a test runs on both; where
// they differ, the test says which version does what. Stage-2 is observed directly with stage2Of().

import { describe, expect, test } from 'vitest'
import {
  KVM_MEM_GUEST_MEMFD,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  KVM_MEMORY_EXIT_FLAG_PRIVATE,
  KVM_X86_SW_PROTECTED_VM,
} from '../../harness/uapi/kvm.ts'
import { MADV_DONTNEED } from '../../harness/uapi/fs.ts'
import { KVM_MEM_USERFAULT, KVM_MEMORY_EXIT_FLAG_USERFAULT } from '../../harness/uapi/series.ts'
import { TASK_SIZE_MAX } from './address-space.ts'
import { createEmulatorBackend, stage2Of, vmStateOf } from './index.ts'
import { GPA, PAGE, run, runSteps, slotVm } from './spec-support.ts'

const UF = KVM_MEM_USERFAULT
const BASE = GPA / PAGE
const SERIES = [
  { profile: 'userfault-v2', cap: 239, other: 243 },
  { profile: 'userfault-v3', cap: 243, other: 239 },
] as const

/** The errno name a call failed with, or 'ok'. */
async function outcome(call: Promise<unknown>): Promise<string> {
  try {
    await call
    return 'ok'
  } catch (e) {
    return (e as { code?: string }).code ?? String(e)
  }
}

const ufExit = (gfn: number, flags = KVM_MEMORY_EXIT_FLAG_USERFAULT) =>
  ({ kind: 'memory_fault', errno: 'EFAULT', flags, gpa: BigInt(gfn * PAGE), size: BigInt(PAGE) }) as const
const read = (n: number) => ({ op: 'read', gva: GPA + n * PAGE }) as const
const slotLevels = (vm: Parameters<typeof stage2Of>[0]) => stage2Of(vm).mappings().filter((m) => m.gfn >= BASE)

describe('capability and flag (F.2, F.6)', () => {
  for (const { profile, cap, other } of SERIES) {
    test(`${profile}: KVM_CHECK_EXTENSION(${cap}) is 1, ${other} is 0; KVM_ENABLE_CAP(${cap}) is EINVAL`, async () => {
      const kvm = createEmulatorBackend({ profile })
      const vm = await kvm.createVm()
      expect([await kvm.checkExtension(cap), await vm.checkExtension(cap)]).toEqual([1, 1])
      expect([await kvm.checkExtension(other), await vm.checkExtension(other)]).toEqual([0, 0])
      await expect(vm.enableCap(cap, [1])).rejects.toMatchObject({ code: 'EINVAL', op: 'KVM_ENABLE_CAP' })
    })

    test(`${profile}: KVM_MEM_USERFAULT through REGION2 only; the legacy ioctl refuses it`, async () => {
      const s = await slotVm({ profile, pages: 16, create: false })
      expect(await outcome(s.vm.setUserMemoryRegion({ slot: 10, flags: UF, guestPhysAddr: GPA, memorySize: 16 * PAGE, userspaceAddr: s.mem.addr })))
        .toBe('EINVAL')
      expect(await outcome(s.set(UF))).toBe('ok')
      expect(await outcome(s.set(UF | KVM_MEM_LOG_DIRTY_PAGES))).toBe('ok')
    })
  }

  test('upstream-6.18 has none of it: the flag is EINVAL, 239 and 243 are 0', async () => {
    const s = await slotVm({ profile: 'upstream-6.18', pages: 16, create: false })
    expect(await outcome(s.set(UF))).toBe('EINVAL')
    expect([await s.kvm.checkExtension(239), await s.kvm.checkExtension(243)]).toEqual([0, 0])
  })
})

describe('userfault_bitmap at KVM_SET_USER_MEMORY_REGION2 (F.3)', () => {
  for (const { profile } of SERIES) {
    test(`${profile}: checked only with the flag: access_ok() over ceil(npages / 64) words, tagged refused, NULL and any alignment pass`, async () => {
      const s = await slotVm({ profile, pages: 65, create: false })
      const set = (flags: number, userfaultBitmap: bigint) => outcome(s.set(flags, { userfaultBitmap }))
      // 65 pages: two words, 16 bytes. The last 16 bytes of user space pass, 8 bytes later do not.
      expect(await set(UF, TASK_SIZE_MAX - 16n)).toBe('ok')
      expect(await set(0, 0n)).toBe('ok')
      await s.vm.setUserMemoryRegion2({ slot: 10, flags: 0, guestPhysAddr: 0, memorySize: 0, userspaceAddr: 0 })
      expect(await set(UF, TASK_SIZE_MAX - 8n)).toBe('EINVAL')
      expect(await set(UF, s.bitmap.addr | (1n << 62n))).toBe('EINVAL')
      expect(await set(UF, 0xffff_8000_0000_0000n)).toBe('EINVAL')
      expect(await set(UF, s.bitmap.addr + 3n)).toBe('ok') // no alignment asked
      expect(await set(0, 0xffff_8000_0000_0000n)).toBe('ok') // the flag is off: not looked at
      expect(await set(UF, 0n)).toBe('ok') // NULL
    })

    test(`${profile}: the pointer is taken when the slot is (re)built with the flag; an unchanged region keeps the old one`, async () => {
      const s = await slotVm({ profile, pages: 16, create: false })
      const slot = () => vmStateOf(s.vm).memslots.get(0, 10)!
      await s.set(UF, { userfaultBitmap: 0x1000n })
      expect(slot().userfaultBitmap).toBe(0x1000n)
      await s.set(UF, { userfaultBitmap: 0x2000n }) // same gpa and flags: returns 0 early
      expect(slot().userfaultBitmap).toBe(0x1000n)
      await s.set(UF | KVM_MEM_LOG_DIRTY_PAGES, { userfaultBitmap: 0x3000n }) // a FLAGS_ONLY change rebuilds it
      expect(slot().userfaultBitmap).toBe(0x3000n)
      await s.set(0, { userfaultBitmap: 0x4000n })
      expect(slot().userfaultBitmap).toBeNull()
    })
  }
})

describe('guest_memfd slots (D.3): v2 toggles USERFAULT only, v3 anything but a MOVE', () => {
  async function gmemSlot(profile: string) {
    const s = await slotVm({ profile, type: KVM_X86_SW_PROTECTED_VM, pages: 512, backing: 'anonymous', create: false })
    const gmem = await s.vm.createGuestMemfd({ size: 512 * PAGE })
    const set = (flags: number, gpa = GPA, userfaultBitmap = 0n) =>
      outcome(s.set(KVM_MEM_GUEST_MEMFD | flags, { gpa, guestMemfd: gmem.fd, userfaultBitmap }))
    expect(await set(0)).toBe('ok')
    return { ...s, gmem, set }
  }

  test('upstream-6.18: "private memslots are immutable": every change is EINVAL', async () => {
    const s = await gmemSlot('upstream-6.18')
    expect([await s.set(0), await s.set(UF)]).toEqual(['EINVAL', 'EINVAL'])
  })

  test('userfault-v2: only a FLAGS_ONLY change of exactly KVM_MEM_USERFAULT', async () => {
    const s = await gmemSlot('userfault-v2')
    expect(await s.set(UF), 'toggle on').toBe('ok')
    expect(await s.set(UF), 'the same again (no change)').toBe('EINVAL')
    expect(await s.set(UF, GPA + 0x20_0000), 'a MOVE').toBe('EINVAL')
    expect(await s.set(0, GPA + 0x20_0000), 'a MOVE that toggles USERFAULT off too').toBe('EINVAL')
    expect(await s.set(0), 'toggle off').toBe('ok')
  })

  test('userfault-v3: changes are allowed, a MOVE is not; nothing to change returns 0', async () => {
    const s = await gmemSlot('userfault-v3')
    expect(await s.set(UF), 'toggle on').toBe('ok')
    expect(await s.set(UF), 'the same again (no change)').toBe('ok')
    expect(await s.set(UF, GPA + 0x20_0000), 'a MOVE').toBe('EINVAL')
    expect(await s.set(0), 'toggle off').toBe('ok')
  })

  test.for(['upstream-6.18', 'pvm-6.18', 'userfault-v2', 'userfault-v3'])(
    '%s: dropping KVM_MEM_GUEST_MEMFD from a guest_memfd slot is EINVAL, in place or moved, the file open or released (measured on 6.18)',
    async (profile) => {
      const type = profile === 'pvm-6.18' ? 0 : KVM_X86_SW_PROTECTED_VM
      const s = await slotVm({ profile, type, pages: 512, backing: 'anonymous', create: false })
      const gmem = await s.vm.createGuestMemfd({ size: 512 * PAGE })
      expect(await outcome(s.set(KVM_MEM_GUEST_MEMFD, { guestMemfd: gmem.fd }))).toBe('ok')
      const drop = (flags: number, gpa = GPA) => outcome(s.set(flags, { gpa }))
      expect([await drop(0), await drop(KVM_MEM_LOG_DIRTY_PAGES), await drop(0, GPA + 0x20_0000)]).toEqual(['EINVAL', 'EINVAL', 'EINVAL'])
      await gmem.close()
      expect([await drop(0), await drop(0, GPA + 0x20_0000)], 'after the file was released').toEqual(['EINVAL', 'EINVAL'])
    },
  )

  test('userfault-v3 [inferred]: a slot without guest_memfd cannot gain KVM_MEM_GUEST_MEMFD (binding is on CREATE only)', async () => {
    const s = await slotVm({ profile: 'userfault-v3', type: KVM_X86_SW_PROTECTED_VM, pages: 16, backing: 'anonymous' })
    const gmem = await s.vm.createGuestMemfd({ size: 16 * PAGE })
    expect(await outcome(s.set(KVM_MEM_GUEST_MEMFD, { guestMemfd: gmem.fd }))).toBe('EINVAL')
  })

  for (const { profile } of SERIES) {
    test(`${profile}: the binding survives the toggle; a private access reads guest_memfd and exits USERFAULT | PRIVATE`, async () => {
      const s = await gmemSlot(profile)
      await s.vm.setMemoryAttributes({ address: GPA + PAGE, size: PAGE, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE })
      await s.bitmap.fill(true)
      expect(await s.set(UF, GPA, s.bitmap.addr), 'toggle on, with a bitmap').toBe('ok')
      const state = vmStateOf(s.vm)
      const slot = state.memslots.get(0, 10)!
      expect(slot.gmem?.file.boundSlots.length).toBe(1)
      expect(slot.gmem?.file.boundSlots[0] === slot, 'the file binds the new slot').toBe(true)
      const { vcpu, exit } = await runSteps(s.vm, [read(0), read(1), { op: 'hlt' }])
      expect(exit).toEqual(ufExit(BASE))
      await s.bitmap.clear(0)
      expect(await run(vcpu)).toEqual(ufExit(BASE + 1, KVM_MEMORY_EXIT_FLAG_USERFAULT | KVM_MEMORY_EXIT_FLAG_PRIVATE))
      await s.bitmap.clear(1)
      expect(await run(vcpu)).toEqual({ kind: 'hlt' })
      expect(stage2Of(s.vm).level(BASE + 1), 'the private page, mapped from guest_memfd').toBe('4K')
    })
  }
})

describe('faults (F.3)', () => {
  for (const { profile } of SERIES) {
    test(`${profile}: a set bit exits for an unmapped page only; off and on makes mapped pages exit again`, async () => {
      const s = await slotVm({ profile, pages: 16, flags: UF })
      const { vcpu, exit } = await runSteps(s.vm, [read(3), { op: 'hlt' }, read(3), { op: 'hlt' }, read(3), { op: 'hlt' }])
      expect(exit).toEqual({ kind: 'hlt' })
      await s.bitmap.set(3)
      expect(await run(vcpu), 'the page is mapped: no exit').toEqual({ kind: 'hlt' })
      await s.set(0)
      await s.set(UF)
      expect(slotLevels(s.vm), 'enabling the flag zapped the slot').toEqual([])
      expect(await run(vcpu)).toEqual(ufExit(BASE + 3))
      expect(slotLevels(s.vm)).toEqual([])
      await s.bitmap.clear(3)
      expect(await run(vcpu)).toEqual({ kind: 'hlt' })
    })

    test(`${profile}: a page the host dropped (MADV_DONTNEED) faults again, and its bit is read again`, async () => {
      const s = await slotVm({ profile, pages: 4, backing: 'anonymous', flags: UF })
      const { vcpu, exit } = await runSteps(s.vm, [read(1), { op: 'hlt' }, read(1), { op: 'hlt' }])
      expect(exit).toEqual({ kind: 'hlt' })
      await s.bitmap.set(1)
      await s.mem.madvise(MADV_DONTNEED, PAGE, PAGE) // the MMU notifier zaps gfn 1
      expect(await run(vcpu)).toEqual(ufExit(BASE + 1))
    })

    test(`${profile}: a bitmap that cannot be read at fault time fails KVM_RUN with a bare EFAULT`, async () => {
      const s = await slotVm({ profile, pages: 16, flags: UF })
      await s.bitmap.close()
      const vcpu = await s.vm.createVcpu(0)
      await vcpu.loadProgram({ steps: [read(0), { op: 'hlt' }] })
      await expect(vcpu.run()).rejects.toMatchObject({ name: 'KvmError', code: 'EFAULT', op: 'KVM_RUN' })
      expect(slotLevels(s.vm)).toEqual([])
    })
  }

  test('userfault-v2: a NULL bitmap with the flag WARNs and the page is not userfault', async () => {
    const s = await slotVm({ profile: 'userfault-v2', pages: 16, create: false })
    await s.set(UF, { userfaultBitmap: 0n })
    const { exit } = await runSteps(s.vm, [read(0), { op: 'hlt' }])
    expect(exit).toEqual({ kind: 'hlt' })
    expect(stage2Of(s.vm).warnings).toEqual(['WARN_ON_ONCE(!memslot->userfault_bitmap) in kvm_gfn_userfault()'])
  })

  test('userfault-v3: a NULL bitmap has no special case: reading it fails, a bare EFAULT', async () => {
    const s = await slotVm({ profile: 'userfault-v3', pages: 16, create: false })
    await s.set(UF, { userfaultBitmap: 0n })
    const vcpu = await s.vm.createVcpu(0)
    await vcpu.loadProgram({ steps: [read(0), { op: 'hlt' }] })
    await expect(vcpu.run()).rejects.toMatchObject({ code: 'EFAULT', op: 'KVM_RUN' })
    expect(stage2Of(s.vm).warnings).toEqual([])
  })
})

describe('stage-2 sizes (F.3): 4 KiB while the flag is set, huge pages recovered after (x86)', () => {
  for (const { profile } of SERIES) {
    test(`${profile}: only 4 KiB mappings while KVM_MEM_USERFAULT is set; turning it off recovers 2 MiB`, async () => {
      const s = await slotVm({ profile, pages: 1024, flags: UF })
      const { vcpu } = await runSteps(s.vm, [read(0), read(1), read(600), { op: 'hlt' }, read(2), { op: 'hlt' }])
      expect(slotLevels(s.vm)).toEqual([
        { gfn: BASE, level: '4K' }, { gfn: BASE + 1, level: '4K' }, { gfn: BASE + 600, level: '4K' },
      ])
      await s.set(0)
      expect(slotLevels(s.vm)).toEqual([{ gfn: BASE, level: '2M' }, { gfn: BASE + 512, level: '2M' }])
      await s.set(UF) // on again: zapped, and 4 KiB from here
      expect(slotLevels(s.vm)).toEqual([])
      await vcpu.run()
      expect(slotLevels(s.vm)).toEqual([{ gfn: BASE + 2, level: '4K' }])
    })

    test(`${profile}: with dirty logging both force 4 KiB; LOG_DIRTY_PAGES toggling does not zap; USERFAULT off recovers 2 MiB even with dirty logging on (modelled, not verified)`, async () => {
      const s = await slotVm({ profile, pages: 1024, flags: UF | KVM_MEM_LOG_DIRTY_PAGES })
      const { vcpu } = await runSteps(s.vm, [read(0), { op: 'hlt' }, read(0), { op: 'hlt' }])
      expect(slotLevels(s.vm)).toEqual([{ gfn: BASE, level: '4K' }])
      await s.set(UF) // dirty logging off, USERFAULT stays: no zap, and no recovery while USERFAULT is set
      expect(slotLevels(s.vm)).toEqual([{ gfn: BASE, level: '4K' }])
      await s.set(UF | KVM_MEM_LOG_DIRTY_PAGES) // dirty logging on again: nothing to split, no zap
      await s.bitmap.set(0)
      expect(await run(vcpu), 'page 0 stayed mapped: no exit').toEqual({ kind: 'hlt' })
      await s.set(KVM_MEM_LOG_DIRTY_PAGES) // USERFAULT off, dirty logging still on
      expect(slotLevels(s.vm)).toEqual([{ gfn: BASE, level: '2M' }])
    })

    test(`${profile}: KVM_PRE_FAULT_MEMORY of a page whose bit is set fails with EFAULT [inferred]; of a clear one maps 4 KiB`, async () => {
      const s = await slotVm({ profile, pages: 16, flags: UF })
      await s.bitmap.set(1)
      const vcpu = await s.vm.createVcpu(0)
      expect(await vcpu.preFaultMemory({ gpa: GPA + PAGE, size: PAGE })).toMatchObject({ ok: false, error: { code: 'EFAULT' } })
      expect(await vcpu.preFaultMemory({ gpa: GPA, size: 2 * PAGE })).toEqual({ ok: true, gpa: BigInt(GPA + PAGE), size: BigInt(PAGE) })
      expect(slotLevels(s.vm)).toEqual([{ gfn: BASE, level: '4K' }])
    })

    test(`${profile}: KVM_PRE_FAULT_MEMORY of a page stage-2 maps still reads its bit (the slow path, A/D bits on), where a guest access does not`, async () => {
      const s = await slotVm({ profile, pages: 16, flags: UF })
      const { vcpu } = await runSteps(s.vm, [read(0), { op: 'hlt' }, read(0), { op: 'hlt' }])
      expect(slotLevels(s.vm)).toEqual([{ gfn: BASE, level: '4K' }])
      await s.bitmap.set(0)
      expect(await run(vcpu), 'the mapped page: no exit').toEqual({ kind: 'hlt' })
      expect(await vcpu.preFaultMemory({ gpa: GPA, size: PAGE })).toMatchObject({ ok: false, error: { code: 'EFAULT' } })
      await s.bitmap.clear(0)
      expect(await vcpu.preFaultMemory({ gpa: GPA, size: PAGE }), 'bit clear: RET_PF_SPURIOUS').toEqual({ ok: true, gpa: BigInt(GPA + PAGE), size: 0n })
    })
  }
})
