import { describe, expect, test } from 'vitest'
import { KVM_MEM_LOG_DIRTY_PAGES } from '../../harness/uapi/kvm.ts'
import { DirtyBitmap } from './dirty-log.ts'
import { createEmulatorBackend, vmStateOf } from './index.ts'

const GFN = 0x100000

async function loggedVm(npages = 130) {
  const kvm = createEmulatorBackend()
  const vm = await kvm.createVm()
  await vm.setUserMemoryRegion({
    slot: 3,
    flags: KVM_MEM_LOG_DIRTY_PAGES,
    guestPhysAddr: BigInt(GFN) * 4096n,
    memorySize: npages * 4096,
    userspaceAddr: 0,
  })
  return { kvm, vm, state: vmStateOf(vm) }
}

describe('DirtyBitmap', () => {
  test('bit n is bit n%64 of little-endian word n/64', () => {
    const bitmap = new DirtyBitmap(130)
    expect(bitmap.bytes).toBe(24)
    for (const n of [0, 9, 63, 64, 129]) bitmap.mark(n)
    const bytes = bitmap.takeBytes()
    const view = new DataView(bytes.buffer)
    expect(view.getBigUint64(0, true)).toBe((1n << 0n) | (1n << 9n) | (1n << 63n))
    expect(view.getBigUint64(8, true)).toBe(1n)
    expect(view.getBigUint64(16, true)).toBe(2n)
    expect(bitmap.dirtyCount).toBe(0)
    expect(() => bitmap.mark(130)).toThrow(RangeError)
  })
})

describe('markDirty (for the vCPU model) and KVM_GET_DIRTY_LOG', () => {
  test('a write marks its page; the log returns the bits and clears them', async () => {
    const { vm, state } = await loggedVm()
    expect(state.markDirty(GFN + 65)).toBe(true)
    expect(state.markDirty(GFN)).toBe(true)
    const log = await vm.getDirtyLog(3)
    expect(log.length).toBe(24)
    expect(log[0]).toBe(1)
    expect(log[8]).toBe(2)
    expect((await vm.getDirtyLog(3)).every((b) => b === 0)).toBe(true)
  })

  test('outside any slot, or in a slot without dirty logging, nothing is recorded', async () => {
    const { vm, state } = await loggedVm()
    expect(state.markDirty(GFN - 1)).toBe(false)
    expect(state.markDirty(GFN + 130)).toBe(false)
    expect(state.markDirty(GFN, 1)).toBe(false)
    await vm.setUserMemoryRegion({ slot: 4, flags: 0, guestPhysAddr: 0, memorySize: 4096, userspaceAddr: 0 })
    expect(state.markDirty(0)).toBe(false)
  })

  test('turning dirty logging off drops the bitmap; on again starts clean', async () => {
    const { vm, state } = await loggedVm()
    state.markDirty(GFN + 1)
    const base = { slot: 3, guestPhysAddr: BigInt(GFN) * 4096n, memorySize: 130 * 4096, userspaceAddr: 0 }
    await vm.setUserMemoryRegion({ ...base, flags: 0 })
    await expect(vm.getDirtyLog(3)).rejects.toMatchObject({ code: 'ENOENT' })
    await vm.setUserMemoryRegion({ ...base, flags: KVM_MEM_LOG_DIRTY_PAGES })
    expect((await vm.getDirtyLog(3)).every((b) => b === 0)).toBe(true)
  })

  test('a MOVE keeps the bitmap (kvm_prepare_memory_region() reuses it)', async () => {
    const { vm, state } = await loggedVm()
    state.markDirty(GFN + 2)
    await vm.setUserMemoryRegion({ slot: 3, flags: KVM_MEM_LOG_DIRTY_PAGES, guestPhysAddr: 0, memorySize: 130 * 4096, userspaceAddr: 0 })
    expect((await vm.getDirtyLog(3))[0]).toBe(4)
    expect(state.markDirty(1)).toBe(true)
  })
})
