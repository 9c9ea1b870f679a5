import { describe, expect, test } from 'vitest'
import type { MemoryAttributes } from '../../harness/backend.ts'
import { KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_X86_SW_PROTECTED_VM } from '../../harness/uapi/kvm.ts'
import { createEmulatorBackend, vmStateOf } from './index.ts'
import { MemoryAttributeMap } from './memory-attributes.ts'

const PRIVATE = KVM_MEMORY_ATTRIBUTE_PRIVATE
const U64_MAX = (1n << 64n) - 1n

async function swVm() {
  const kvm = createEmulatorBackend()
  return { kvm, vm: await kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM }) }
}

async function outcome(call: Promise<unknown>): Promise<string> {
  return call.then(
    () => 'ok',
    (e: { code: string }) => e.code,
  )
}

describe('KVM_SET_MEMORY_ATTRIBUTES: kvm_vm_ioctl_set_mem_attributes()', () => {
  test('a kernel without generic memory attributes has no such ioctl: ENOTTY (pvm-6.18, measured)', async () => {
    const kvm = createEmulatorBackend({ profile: 'pvm-6.18' })
    const vm = await kvm.createVm()
    await expect(vm.setMemoryAttributes({ address: 0, size: 4096, attributes: 0 })).rejects.toMatchObject({
      code: 'ENOTTY',
      op: 'KVM_SET_MEMORY_ATTRIBUTES',
    })
  })

  test('flags != 0 is EINVAL', async () => {
    const { vm } = await swVm()
    expect(await outcome(vm.setMemoryAttributes({ address: 0, size: 4096, attributes: PRIVATE, flags: 1 }))).toBe('EINVAL')
  })

  test('PRIVATE is supported on SW_PROTECTED only; no other bit anywhere', async () => {
    const { kvm, vm } = await swVm()
    const dflt = await kvm.createVm()
    const at = (attributes: bigint): MemoryAttributes => ({ address: 0, size: 4096, attributes })
    expect(await outcome(vm.setMemoryAttributes(at(PRIVATE)))).toBe('ok')
    expect(await outcome(dflt.setMemoryAttributes(at(PRIVATE)))).toBe('EINVAL')
    expect(await outcome(dflt.setMemoryAttributes(at(0n)))).toBe('ok')
    for (let bit = 0n; bit < 64n; bit++) {
      if (1n << bit === PRIVATE) continue
      expect(await outcome(vm.setMemoryAttributes(at(1n << bit))), `bit ${bit}`).toBe('EINVAL')
    }
  })

  test('size 0 or a wrapping range is EINVAL', async () => {
    const { vm } = await swVm()
    expect(await outcome(vm.setMemoryAttributes({ address: 0, size: 0, attributes: PRIVATE }))).toBe('EINVAL')
    expect(await outcome(vm.setMemoryAttributes({ address: U64_MAX - 4095n, size: 8192, attributes: PRIVATE }))).toBe('EINVAL')
  })

  test('address or size not page aligned is EINVAL', async () => {
    const { vm } = await swVm()
    expect(await outcome(vm.setMemoryAttributes({ address: 1, size: 4096, attributes: PRIVATE }))).toBe('EINVAL')
    expect(await outcome(vm.setMemoryAttributes({ address: 0, size: 4095, attributes: PRIVATE }))).toBe('EINVAL')
  })

  test('the attributes are recorded per gfn, however large the range', async () => {
    const { vm } = await swVm()
    await vm.setMemoryAttributes({ address: 0, size: U64_MAX - 4095n, attributes: PRIVATE })
    const state = vmStateOf(vm)
    expect(state.isPrivate(0)).toBe(true)
    expect(state.isPrivate(2 ** 52 - 2)).toBe(true)
    await vm.setMemoryAttributes({ address: 0x1000, size: 0x2000, attributes: 0 })
    expect([0, 1, 2, 3].map((gfn) => state.isPrivate(gfn))).toEqual([true, false, false, true])
    expect(state.attributes.entries()).toHaveLength(2)
  })
})

describe('MemoryAttributeMap', () => {
  test('set splits and merges ranges', () => {
    const map = new MemoryAttributeMap()
    map.set(10, 20, PRIVATE)
    map.set(20, 30, PRIVATE)
    expect(map.entries()).toEqual([{ start: 10, end: 30, value: PRIVATE }])
    map.set(15, 25, 0n)
    expect(map.entries()).toEqual([
      { start: 10, end: 15, value: PRIVATE },
      { start: 25, end: 30, value: PRIVATE },
    ])
    map.set(12, 27, 16n)
    expect(map.entries().map((r) => [r.start, r.end, r.value])).toEqual([
      [10, 12, PRIVATE],
      [12, 27, 16n],
      [27, 30, PRIVATE],
    ])
    expect([9, 10, 12, 26, 27, 30].map((g) => map.get(g))).toEqual([0n, PRIVATE, 16n, 16n, PRIVATE, 0n])
  })

  test('rangeHas is kvm_range_has_memory_attributes(): gaps hold 0', () => {
    const map = new MemoryAttributeMap()
    map.set(10, 20, PRIVATE)
    map.set(20, 30, PRIVATE | 16n)
    expect(map.rangeHas(10, 30, PRIVATE, PRIVATE)).toBe(true)
    expect(map.rangeHas(9, 30, PRIVATE, PRIVATE)).toBe(false)
    expect(map.rangeHas(10, 31, PRIVATE, PRIVATE)).toBe(false)
    expect(map.rangeHas(10, 30, ~0n, PRIVATE)).toBe(false)
    expect(map.rangeHas(0, 10, PRIVATE, 0n)).toBe(true)
    expect(map.rangeHas(0, 11, PRIVATE, 0n)).toBe(false)
  })
})
