// The stage-2 model (stage2.ts, mapping-level.ts, memslot-mmu.ts, page-fault.ts): what KVM maps on a
// guest access and at what size, and what zaps, splits and recovers mappings. Observed with stage2Of(),
// which no conformance test can call: on a real kernel these are visible only through their effects.

import { describe, expect, test } from 'vitest'
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, MADV_DONTNEED, MADV_REMOVE } from '../../harness/uapi/fs.ts'
import {
  KVM_CAP_DISABLE_QUIRKS2,
  KVM_MEM_GUEST_MEMFD,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_READONLY,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  KVM_X86_QUIRK_SLOT_ZAP_ALL,
  KVM_X86_SW_PROTECTED_VM,
} from '../../harness/uapi/kvm.ts'
import { stage2Of } from './index.ts'
import { GPA, PAGE, runSteps, slotVm } from './spec-support.ts'
import { Stage2 } from './stage2.ts'

const touch = (gpa: number, write = false) =>
  write ? ({ op: 'write', gva: gpa, value: 1 } as const) : ({ op: 'read', gva: gpa } as const)
const BASE = GPA / PAGE

describe('Stage2', () => {
  test('a 2 MiB leaf replaces the 4 KiB leaves under it; zap takes every leaf over the range', () => {
    const s = new Stage2()
    s.map(1, '4K')
    s.map(600, '4K')
    s.map(3, '2M')
    expect(s.mappings()).toEqual([{ gfn: 0, level: '2M' }, { gfn: 600, level: '4K' }])
    expect([s.level(511), s.level(512), s.level(600)]).toEqual(['2M', null, '4K'])
    s.zap(511, 513) // overlaps the 2 MiB leaf: it goes whole
    expect(s.mappings()).toEqual([{ gfn: 600, level: '4K' }])
  })

  test('split makes 512 4 KiB leaves of a 2 MiB one; regionsWithSmall finds them', () => {
    const s = new Stage2()
    s.map(512, '2M')
    s.split(0, 2048)
    expect(s.mappings()).toHaveLength(512)
    expect(s.regionsWithSmall(0, 2048)).toEqual([512])
  })
})

describe('what a guest access maps', () => {
  test('2 MiB where slot and host allow it: anonymous_thp, 2 MiB-aligned gfn and hva, the region inside the slot', async () => {
    const { vm } = await slotVm({ pages: 1024 })
    await runSteps(vm, [touch(GPA + 5 * PAGE), touch(GPA + 700 * PAGE), { op: 'hlt' }])
    expect(stage2Of(vm).mappings().filter((m) => m.gfn >= BASE)).toEqual([
      { gfn: BASE, level: '2M' },
      { gfn: BASE + 512, level: '2M' },
    ])
  })

  test('4 KiB for anonymous memory (kvm_util maps it MADV_NOHUGEPAGE) and for shmem', async () => {
    for (const backing of ['anonymous', 'shmem'] as const) {
      const { vm } = await slotVm({ pages: 512, backing })
      await runSteps(vm, [touch(GPA + 5 * PAGE), { op: 'hlt' }])
      expect(stage2Of(vm).level(BASE + 5), backing).toBe('4K')
    }
  })

  test('4 KiB where the 2 MiB region sticks out of the slot, or gfn and hva disagree modulo 2 MiB', async () => {
    const edge = await slotVm({ pages: 513 })
    await runSteps(edge.vm, [touch(GPA), touch(GPA + 512 * PAGE), { op: 'hlt' }])
    expect([stage2Of(edge.vm).level(BASE), stage2Of(edge.vm).level(BASE + 512)]).toEqual(['2M', '4K'])
    const skewed = await slotVm({ pages: 1024 })
    await skewed.set(0, { gpa: GPA + PAGE }) // a MOVE by one page: every region is now misaligned
    await runSteps(skewed.vm, [touch(GPA + 600 * PAGE), { op: 'hlt' }])
    expect(stage2Of(skewed.vm).level(BASE + 600)).toBe('4K')
  })

  test('a write to a READONLY slot maps nothing (it exits as MMIO); a read maps', async () => {
    const { vm } = await slotVm({ pages: 512, flags: KVM_MEM_READONLY })
    const { vcpu, exit } = await runSteps(vm, [touch(GPA, true), touch(GPA + PAGE), { op: 'hlt' }])
    expect(exit).toMatchObject({ kind: 'mmio', isWrite: true })
    expect(stage2Of(vm).level(BASE)).toBeNull()
    await vcpu.run()
    expect(stage2Of(vm).level(BASE + 1)).toBe('2M')
  })

  test('an access that ends in a memory fault exit maps nothing', async () => {
    const { vm, mem } = await slotVm({ pages: 512 })
    await mem.close()
    const { exit } = await runSteps(vm, [touch(GPA), { op: 'hlt' }])
    expect(exit).toMatchObject({ kind: 'memory_fault', flags: 0n })
    expect(stage2Of(vm).level(BASE)).toBeNull()
  })
})

describe('what zaps, splits and recovers mappings', () => {
  test('deleting a slot zaps every mapping with KVM_X86_QUIRK_SLOT_ZAP_ALL, only the slot\'s without it', async () => {
    for (const quirk of [true, false]) {
      const { vm } = await slotVm({ pages: 512 })
      if (!quirk) await vm.enableCap(KVM_CAP_DISABLE_QUIRKS2, [KVM_X86_QUIRK_SLOT_ZAP_ALL])
      await runSteps(vm, [touch(GPA), { op: 'hlt' }])
      const boot = stage2Of(vm).mappings().filter((m) => m.gfn < BASE)
      expect(boot.length, 'the boot slot\'s pages the vCPU fetched and walked').toBeGreaterThan(0)
      await vm.setUserMemoryRegion2({ slot: 10, flags: 0, guestPhysAddr: 0, memorySize: 0, userspaceAddr: 0 })
      expect(stage2Of(vm).mappings(), quirk ? 'with the quirk' : 'without the quirk').toEqual(quirk ? [] : boot)
    }
  })

  test('moving a slot zaps its mappings', async () => {
    const s = await slotVm({ pages: 512 })
    await s.vm.enableCap(KVM_CAP_DISABLE_QUIRKS2, [KVM_X86_QUIRK_SLOT_ZAP_ALL])
    await runSteps(s.vm, [touch(GPA), { op: 'hlt' }])
    await s.set(0, { gpa: GPA + 0x20_0000 })
    expect(stage2Of(s.vm).mappings().filter((m) => m.gfn >= BASE)).toEqual([])
  })

  test('dirty logging: 4 KiB mappings; enabling it splits 2 MiB ones, disabling recovers them', async () => {
    const s = await slotVm({ pages: 1024 })
    const { vcpu } = await runSteps(s.vm, [touch(GPA), { op: 'hlt' }, touch(GPA + 600 * PAGE), { op: 'hlt' }])
    expect(stage2Of(s.vm).level(BASE)).toBe('2M')
    await s.set(KVM_MEM_LOG_DIRTY_PAGES)
    expect(stage2Of(s.vm).mappings().filter((m) => m.gfn >= BASE && m.level === '4K')).toHaveLength(512)
    await vcpu.run()
    expect(stage2Of(s.vm).level(BASE + 600)).toBe('4K')
    await s.set(0)
    expect(stage2Of(s.vm).mappings().filter((m) => m.gfn >= BASE)).toEqual([
      { gfn: BASE, level: '2M' },
      { gfn: BASE + 512, level: '2M' },
    ])
  })

  test('KVM_SET_MEMORY_ATTRIBUTES zaps the range; a region with mixed attributes maps 4 KiB', async () => {
    const kvmType = KVM_X86_SW_PROTECTED_VM
    const s = await slotVm({ type: kvmType, pages: 512 })
    const { vcpu } = await runSteps(s.vm, [touch(GPA), { op: 'hlt' }, touch(GPA + 2 * PAGE), { op: 'hlt' }])
    expect(stage2Of(s.vm).level(BASE)).toBe('2M')
    await s.vm.setMemoryAttributes({ address: GPA + PAGE, size: PAGE, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE })
    expect(stage2Of(s.vm).level(BASE)).toBeNull()
    await vcpu.run()
    expect(stage2Of(s.vm).level(BASE + 2)).toBe('4K')
  })

  test('MADV_DONTNEED and munmap of host memory zap the gfns behind it (MMU notifiers); MADV_REMOVE in every alias', async () => {
    const s = await slotVm({ pages: 8, backing: 'anonymous' })
    await runSteps(s.vm, [{ op: 'touch_pages', gva: GPA, pages: 8, stride: PAGE, write: false, value: 0 }, { op: 'hlt' }])
    expect(stage2Of(s.vm).mappings().filter((m) => m.gfn >= BASE)).toHaveLength(8)
    await s.mem.madvise(MADV_DONTNEED, 2 * PAGE, PAGE)
    expect(stage2Of(s.vm).level(BASE + 2)).toBeNull()
    expect([stage2Of(s.vm).level(BASE + 1), stage2Of(s.vm).level(BASE + 3)]).toEqual(['4K', '4K'])
    await s.mem.close()
    expect(stage2Of(s.vm).mappings().filter((m) => m.gfn >= BASE)).toEqual([])

    const shared = await slotVm({ pages: 4, backing: 'shmem' })
    const alias = await shared.mem.alias()
    await runSteps(shared.vm, [{ op: 'touch_pages', gva: GPA, pages: 4, stride: PAGE, write: false, value: 0 }, { op: 'hlt' }])
    await alias.madvise(MADV_REMOVE, PAGE, PAGE) // through the other mapping of the same file
    expect([0, 1, 2].map((n) => stage2Of(shared.vm).level(BASE + n))).toEqual(['4K', null, '4K'])
  })

  test('punching a hole in a guest_memfd zaps the gfns bound to it', async () => {
    const kvmType = KVM_X86_SW_PROTECTED_VM
    const base = await slotVm({ type: kvmType, pages: 4, backing: 'anonymous', create: false })
    const gmem = await base.vm.createGuestMemfd({ size: 4 * PAGE })
    await base.set(KVM_MEM_GUEST_MEMFD, { guestMemfd: gmem.fd })
    await base.vm.setMemoryAttributes({ address: GPA, size: 4 * PAGE, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE })
    await runSteps(base.vm, [touch(GPA), touch(GPA + 3 * PAGE), { op: 'hlt' }])
    expect([stage2Of(base.vm).level(BASE), stage2Of(base.vm).level(BASE + 3)]).toEqual(['4K', '4K'])
    await gmem.fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 3 * PAGE, PAGE)
    expect([stage2Of(base.vm).level(BASE), stage2Of(base.vm).level(BASE + 3)]).toEqual(['4K', null])
  })
})
