// KVM_PRE_FAULT_MEMORY (pre-fault.ts, vcpu.ts preFault()): the argument checks, ENOENT and partial
// progress, huge steps, already-mapped ranges, private memory, EINTR, EAGAIN in a memslot's
// KVM_MEMSLOT_INVALID window, and what the PVM profile answers (measured on the project's host).

import { describe, expect, test } from 'vitest'
import type { Vcpu } from '../../harness/backend.ts'
import { KVM_MEM_GUEST_MEMFD, KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_X86_SW_PROTECTED_VM } from '../../harness/uapi/kvm.ts'
import { createEmulatorBackend, holdMemslotInvalidation, stage2Of } from './index.ts'
import { checkPreFault } from './pre-fault.ts'
import { GPA, PAGE, run, slotVm, sleep } from './spec-support.ts'

const G = BigInt(GPA)
const P = BigInt(PAGE)
const SZ_2M = 0x20_0000n
const BASE = GPA / PAGE
const U64_MAX = (1n << 64n) - 1n
const slotLevels = (vm: Parameters<typeof stage2Of>[0]) => stage2Of(vm).mappings().filter((m) => m.gfn >= BASE)
const fail = (code: string, gpa: bigint, size: bigint) => ({ ok: false, error: { code, errno: expect.any(Number) }, gpa, size })

async function vcpuOf(o: Parameters<typeof slotVm>[0] = {}) {
  const s = await slotVm({ profile: 'upstream-6.18', ...o })
  return { ...s, vcpu: await s.vm.createVcpu(0) }
}

describe('kvm_vcpu_pre_fault_memory(): argument checks', () => {
  test('flags != 0, an unaligned gpa or size, size 0 and gpa + size <= gpa are EINVAL', () => {
    const ok = { gpa: G, size: P, flags: 0n }
    expect(checkPreFault(ok)).toBeUndefined()
    for (const bad of [
      { ...ok, flags: 1n },
      { ...ok, gpa: G + 1n },
      { ...ok, size: P - 1n },
      { ...ok, size: 0n },
      { ...ok, gpa: U64_MAX - P + 1n }, // ends exactly at 2^64: wraps to 0
      { ...ok, gpa: U64_MAX - P + 1n, size: 2n * P },
    ]) {
      expect(checkPreFault(bad), JSON.stringify(bad, (_k, v) => (typeof v === 'bigint' ? v.toString(16) : v))).toBe('EINVAL')
    }
  })

  test('EINVAL comes first, and leaves the struct as it was, on every profile', async () => {
    for (const profile of ['upstream-6.18', 'pvm-6.18', 'userfault-v3']) {
      const vcpu = await (await createEmulatorBackend({ profile }).createVm()).createVcpu(0)
      expect(await vcpu.preFaultMemory({ gpa: 1, size: PAGE }), profile).toEqual(fail('EINVAL', 1n, P))
    }
  })
})

describe('mapping', () => {
  test('no memslot: ENOENT; a range that runs out of the slot maps what it can and returns 0 with the rest', async () => {
    const { vm, vcpu } = await vcpuOf({ pages: 4, backing: 'anonymous' })
    expect(await vcpu.preFaultMemory({ gpa: G + 4n * P, size: P })).toEqual(fail('ENOENT', G + 4n * P, P))
    expect(await vcpu.preFaultMemory({ gpa: G + 3n * P, size: 2n * P })).toEqual({ ok: true, gpa: G + 4n * P, size: P })
    expect(slotLevels(vm)).toEqual([{ gfn: BASE + 3, level: '4K' }])
  })

  test('one step maps up to a huge page; an already mapped range counts as progress', async () => {
    const { vm, vcpu } = await vcpuOf({ pages: 1024 })
    expect(await vcpu.preFaultMemory({ gpa: G + P, size: 2n * SZ_2M - P })).toEqual({ ok: true, gpa: G + 2n * SZ_2M, size: 0n })
    expect(slotLevels(vm)).toEqual([{ gfn: BASE, level: '2M' }, { gfn: BASE + 512, level: '2M' }])
    expect(await vcpu.preFaultMemory({ gpa: G, size: 2n * SZ_2M })).toEqual({ ok: true, gpa: G + 2n * SZ_2M, size: 0n })
  })

  test('a guest access after a prefault does not fault again: the mapping is already there', async () => {
    const { vm, vcpu } = await vcpuOf({ pages: 16, backing: 'anonymous' })
    expect(await vcpu.preFaultMemory({ gpa: G, size: 16n * P })).toMatchObject({ ok: true, size: 0n })
    expect(slotLevels(vm)).toHaveLength(16)
    await vcpu.loadProgram({ steps: [{ op: 'touch_pages', gva: GPA, pages: 16, stride: PAGE, write: false, value: 0 }, { op: 'hlt' }] })
    expect(await run(vcpu)).toEqual({ kind: 'hlt' })
    expect(slotLevels(vm)).toHaveLength(16)
  })

  test('SW_PROTECTED private memory is prefaulted from guest_memfd (4 KiB); private without guest_memfd is EFAULT', async () => {
    const s = await vcpuOf({ type: KVM_X86_SW_PROTECTED_VM, pages: 512, create: false })
    const gmem = await s.vm.createGuestMemfd({ size: 512 * PAGE })
    await s.set(KVM_MEM_GUEST_MEMFD, { guestMemfd: gmem.fd })
    await s.vm.setMemoryAttributes({ address: G, size: SZ_2M, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE })
    expect(await s.vcpu.preFaultMemory({ gpa: G, size: 2n * P })).toEqual({ ok: true, gpa: G + 2n * P, size: 0n })
    expect(slotLevels(s.vm)).toEqual([{ gfn: BASE, level: '4K' }, { gfn: BASE + 1, level: '4K' }])

    const plain = await vcpuOf({ type: KVM_X86_SW_PROTECTED_VM, pages: 16 })
    await plain.vm.setMemoryAttributes({ address: G, size: P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE })
    expect(await plain.vcpu.preFaultMemory({ gpa: G, size: P })).toEqual(fail('EFAULT', G, P))
  })
})

describe('interruptions', () => {
  /** A prefault of 64 pages of 4 KiB: 64 steps, the host getting in before each. */
  async function longPrefault(): Promise<{ vcpu: Vcpu; pending: ReturnType<Vcpu['preFaultMemory']> }> {
    const { vcpu } = await vcpuOf({ pages: 64, backing: 'anonymous' })
    return { vcpu, pending: vcpu.preFaultMemory({ gpa: G, size: 64n * P }) }
  }

  test('a kick before the first step: EINTR, nothing consumed', async () => {
    const { vcpu, pending } = await longPrefault()
    await vcpu.kick()
    expect(await pending).toEqual(fail('EINTR', G, 64n * P))
  })

  test('a kick after some steps: 0, with the rest of the range left', async () => {
    const { vcpu, pending } = await longPrefault()
    for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve))
    await vcpu.kick()
    const r = await pending
    expect(r.ok).toBe(true)
    expect(r.size > 0n && r.size < 64n * P, `left ${r.size}`).toBe(true)
    expect(r.gpa + r.size).toBe(G + 64n * P)
  })

  test('while it runs, other vCPU ioctls are EBUSY and the kick only affects this one call', async () => {
    const { vcpu, pending } = await longPrefault()
    await expect(vcpu.run()).rejects.toMatchObject({ code: 'EBUSY', op: 'KVM_RUN' })
    await expect(vcpu.preFaultMemory({ gpa: G, size: P })).rejects.toMatchObject({ code: 'EBUSY' })
    expect(await pending).toMatchObject({ ok: true, size: 0n })
  })

  test('a memslot being deleted (KVM_MEMSLOT_INVALID): EAGAIN, and vCPU faults on it retry until it is gone', async () => {
    const s = await vcpuOf({ pages: 16, backing: 'anonymous' })
    await s.vcpu.loadProgram({ steps: [{ op: 'read', gva: GPA }, { op: 'hlt' }] })
    const hold = holdMemslotInvalidation(s.vm)
    const deleting = s.vm.setUserMemoryRegion2({ slot: 10, flags: 0, guestPhysAddr: 0, memorySize: 0, userspaceAddr: 0 })
    await hold.reached
    expect(await s.vcpu.preFaultMemory({ gpa: G, size: P })).toEqual(fail('EAGAIN', G, P))
    const running = s.vcpu.run({ timeoutMs: 5000 })
    await sleep(20) // the guest's read keeps faulting (RET_PF_RETRY) while the window stays open
    hold.release()
    await deleting
    expect(await running).toMatchObject({ kind: 'mmio', physAddr: G, isWrite: false })
    expect(await s.vcpu.preFaultMemory({ gpa: G, size: P })).toEqual(fail('ENOENT', G, P))
  })
})

describe('the PVM profile (shadow paging), as measured on the project host', () => {
  test('KVM_CAP_PRE_FAULT_MEMORY 0; no MMU pages yet: ENOSPC (kvm_mmu_reload() fails first); then EOPNOTSUPP, in a slot or not', async () => {
    const kvm = createEmulatorBackend({ profile: 'pvm-6.18' })
    expect(await kvm.checkExtension(236)).toBe(0)
    const vm = await kvm.createVm()
    const vcpu = await vm.createVcpu(0)
    expect(await vcpu.preFaultMemory({ gpa: 0, size: PAGE })).toEqual(fail('ENOSPC', 0n, P))
    await vm.setNrMmuPages(64)
    expect(await vcpu.preFaultMemory({ gpa: 0, size: PAGE })).toEqual(fail('EOPNOTSUPP', 0n, P))
    const s = await slotVm({ profile: 'pvm-6.18', pages: 16 })
    const v = await s.vm.createVcpu(0)
    expect(await v.preFaultMemory({ gpa: G, size: P })).toEqual(fail('EOPNOTSUPP', G, P))
    expect(await v.preFaultMemory({ gpa: 0x1000_0000, size: P })).toEqual(fail('EOPNOTSUPP', 0x1000_0000n, P))
    expect(await v.preFaultMemory({ gpa: G, size: P, flags: 1 })).toEqual(fail('EINVAL', G, P))
  })
})
