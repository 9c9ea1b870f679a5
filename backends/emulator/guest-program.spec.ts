// The interpreter (guest-program.ts) through the contract: each step's semantics, every exit it makes,
// MMIO completion, exceptions through the IDT, the instruction fetch, and load-time validation
// (guest-program-check.ts).

import { describe, expect, test } from 'vitest'
import { IDENTITY_MAP_END, type GuestStep } from '../../harness/guest-program.ts'
import { KVM_INTERNAL_ERROR_DELIVERY_EV, KVM_INTERNAL_ERROR_EMULATION } from '../../harness/uapi/kvm.ts'
import { accessException, GP_VECTOR, isCanonical, PF_VECTOR } from './exceptions.ts'
import { createEmulatorBackend } from './index.ts'
import { GPA, guest, le, MMIO_GPA, nextSignal, PAGE, run } from './spec-support.ts'

const NON_CANONICAL = 0x8000_0000_0000_0000n

describe('steps', () => {
  test('signal sends its value or acc low 32 bits as an io exit; after the last step the vCPU halts for good', async () => {
    const { vcpu, mem } = await guest([
      { op: 'read', gva: GPA },
      { op: 'signal', port: 0x10 },
      { op: 'signal', port: 0x11, value: 7 },
    ])
    await mem.write(0, le(0x1122_3344_5566_7788n))
    expect(await run(vcpu)).toEqual({ kind: 'io', port: 0x10, size: 4, direction: 'out', count: 1, data: le(0x5566_7788, 4) })
    expect(await vcpu.programStep()).toBe(2)
    expect(await nextSignal(vcpu)).toBe(7)
    expect(await run(vcpu)).toEqual({ kind: 'hlt' })
    expect(await run(vcpu)).toEqual({ kind: 'hlt' })
    expect(await vcpu.programStep()).toBe('halt')
  })

  test('reads zero-extend their width; a write without value stores the low bytes of acc', async () => {
    const { vcpu, mem } = await guest([
      { op: 'read', gva: GPA, width: 2 },
      { op: 'signal', port: 1 },
      { op: 'write', gva: GPA + 8, width: 1 },
      { op: 'write', gva: GPA + 16, width: 4, value: 0xdead_beef },
      { op: 'hlt' },
      { op: 'read', gva: GPA + 17, width: 1 },
      { op: 'signal', port: 2 },
    ])
    await mem.write(0, le(0xffff_8281n))
    expect(await nextSignal(vcpu)).toBe(0x8281)
    expect(await run(vcpu)).toEqual({ kind: 'hlt' })
    expect(await vcpu.programStep()).toBe(5) // KVM_EXIT_HLT leaves RIP after the hlt
    expect(await mem.read(8, 2)).toEqual(Uint8Array.of(0x81, 0))
    expect(await mem.read(16, 4)).toEqual(le(0xdead_beef, 4))
    expect(await nextSignal(vcpu)).toBe(0xbe)
  })

  test('jump loops; a loop that never exits is stopped by the deadline', async () => {
    const { vcpu } = await guest([{ op: 'signal', port: 1, value: 1 }, { op: 'jump', to: 0 }])
    for (let i = 0; i < 3; i++) expect(await nextSignal(vcpu)).toBe(1)
    await vcpu.loadProgram({ steps: [{ op: 'jump', to: 0 }] })
    await expect(vcpu.run({ timeoutMs: 50 })).rejects.toMatchObject({ name: 'VcpuTimeout' })
    expect(await vcpu.programStep()).toBe(0)
  })

  test('touch_pages stores value at every stride; a read pass leaves the last page in acc', async () => {
    const { vcpu, mem } = await guest(
      [
        { op: 'touch_pages', gva: GPA, pages: 3, stride: PAGE, write: true, value: 0x77n },
        { op: 'write', gva: GPA + 2 * PAGE, value: 9 },
        { op: 'touch_pages', gva: GPA, pages: 3, stride: PAGE, write: false, value: 0 },
        { op: 'signal', port: 1 },
        { op: 'touch_pages', gva: GPA, pages: 0, stride: PAGE, write: false, value: 0 },
        { op: 'signal', port: 2 },
      ],
      { slotPages: 3 },
    )
    expect(await nextSignal(vcpu)).toBe(9)
    expect(await mem.read(0, 8)).toEqual(le(0x77))
    expect(await mem.read(PAGE, 8)).toEqual(le(0x77))
    expect(await nextSignal(vcpu)).toBe(9) // pages 0 touches nothing and leaves acc
  })

  test('fill stores bytes across pages; check counts the bytes that differ', async () => {
    const { vcpu, mem } = await guest(
      [
        { op: 'fill', gva: GPA + 100, length: 2 * PAGE, byte: 0xaa },
        { op: 'hlt' },
        { op: 'check', gva: GPA + 100, length: 2 * PAGE, byte: 0xaa },
        { op: 'signal', port: 1 },
        { op: 'check', gva: GPA, length: 0, byte: 0xaa },
        { op: 'signal', port: 2 },
      ],
      { slotPages: 3 },
    )
    expect(await run(vcpu)).toEqual({ kind: 'hlt' })
    expect(await mem.findMismatch(100, 2 * PAGE, 0xaa)).toBe(-1n)
    expect(await mem.read(99, 1)).toEqual(Uint8Array.of(0))
    expect(await mem.read(100 + 2 * PAGE, 1)).toEqual(Uint8Array.of(0))
    await mem.write(PAGE, Uint8Array.of(1, 2))
    expect(await nextSignal(vcpu)).toBe(2)
    expect(await nextSignal(vcpu)).toBe(0)
  })
})

describe('MMIO', () => {
  test('a read with no memslot exits; the next run completes it with mmioData, little-endian', async () => {
    const { vcpu } = await guest([{ op: 'read', gva: MMIO_GPA, width: 4 }, { op: 'signal', port: 1 }])
    expect(await run(vcpu)).toEqual({ kind: 'mmio', physAddr: BigInt(MMIO_GPA), len: 4, isWrite: false, data: new Uint8Array(4) })
    expect(await vcpu.programStep()).toBe(0) // RIP stays on a read until it completes
    expect(await nextSignal(vcpu, { mmioData: Uint8Array.of(1, 2, 3, 4) })).toBe(0x0403_0201)
  })

  test('writes exit with their bytes and RIP moves on; a read completed without mmioData gets what kvm_run.mmio.data holds', async () => {
    const { vcpu } = await guest([
      { op: 'write', gva: MMIO_GPA, width: 4, value: 0xdead_beef },
      { op: 'read', gva: MMIO_GPA + 8, width: 4 },
      { op: 'signal', port: 1 },
    ])
    expect(await run(vcpu)).toEqual({ kind: 'mmio', physAddr: BigInt(MMIO_GPA), len: 4, isWrite: true, data: le(0xdead_beef, 4) })
    expect(await vcpu.programStep()).toBe(1)
    // KVM copied the write into kvm_run.mmio.data and leaves it there for the read's exit.
    expect(await run(vcpu)).toMatchObject({ kind: 'mmio', isWrite: false, len: 4, data: le(0xdead_beef, 4) })
    expect(await nextSignal(vcpu)).toBe(0xdead_beef)
  })

  test('mmio.data shares kvm_run\'s exit union: after an io exit, a read completed without data gets io.data_offset', async () => {
    const { vcpu } = await guest([{ op: 'signal', port: 1, value: 0 }, { op: 'read', gva: MMIO_GPA }, { op: 'signal', port: 2 }])
    expect(await nextSignal(vcpu)).toBe(0)
    expect(await run(vcpu)).toMatchObject({ kind: 'mmio', isWrite: false, len: 8, data: le(0x1000) })
    expect(await nextSignal(vcpu)).toBe(0x1000) // measured so on the 6.18 host
  })

  test('fill and check reach MMIO one byte per exit', async () => {
    const { vcpu } = await guest([
      { op: 'fill', gva: MMIO_GPA, length: 2, byte: 0x5a },
      { op: 'check', gva: MMIO_GPA, length: 2, byte: 0xaa },
      { op: 'signal', port: 1 },
    ])
    for (const at of [0, 1]) {
      expect(await run(vcpu)).toEqual({ kind: 'mmio', physAddr: BigInt(MMIO_GPA + at), len: 1, isWrite: true, data: Uint8Array.of(0x5a) })
      expect(await vcpu.programStep()).toBe(0) // rep stosb ends when re-entered, as measured on the 6.18 host
    }
    expect(await run(vcpu)).toMatchObject({ kind: 'mmio', physAddr: BigInt(MMIO_GPA), len: 1, isWrite: false })
    expect(await run(vcpu, { mmioData: Uint8Array.of(0xaa) })).toMatchObject({ physAddr: BigInt(MMIO_GPA + 1), isWrite: false })
    expect(await nextSignal(vcpu, { mmioData: Uint8Array.of(0) })).toBe(1)
  })

  test('an access from RAM into MMIO splits at the page boundary', async () => {
    const end = GPA + PAGE // slot 10 is one page here
    const { vcpu, mem } = await guest(
      [{ op: 'read', gva: end - 4 }, { op: 'signal', port: 1 }, { op: 'write', gva: end - 2, width: 4, value: 0x4433_2211 }],
      { slotPages: 1 },
    )
    await mem.write(PAGE - 4, Uint8Array.of(1, 2, 3, 4))
    expect(await run(vcpu)).toMatchObject({ kind: 'mmio', physAddr: BigInt(end), len: 4, isWrite: false })
    expect(await nextSignal(vcpu, { mmioData: Uint8Array.of(5, 6, 7, 8) })).toBe(0x0403_0201) // the low half is RAM
    expect(await run(vcpu)).toEqual({ kind: 'mmio', physAddr: BigInt(end), len: 2, isWrite: true, data: Uint8Array.of(0x33, 0x44) })
    expect(await mem.read(PAGE - 2, 2)).toEqual(Uint8Array.of(0x11, 0x22))
    expect(await run(vcpu)).toEqual({ kind: 'hlt' })
  })
})

describe('exceptions', () => {
  test('#GP for a non-canonical byte, #PF past the identity map, nothing inside it', () => {
    expect(isCanonical(0x7fff_ffff_ffffn)).toBe(true)
    expect(isCanonical(0x8000_0000_0000n)).toBe(false)
    expect(isCanonical(0xffff_8000_0000_0000n)).toBe(true)
    expect(accessException(NON_CANONICAL, 8)).toBe(GP_VECTOR)
    expect(accessException(0x7fff_ffff_fffcn, 8)).toBe(GP_VECTOR)
    expect(accessException(0xffff_8000_0000_0000n, 8)).toBe(PF_VECTOR)
    expect(accessException(IDENTITY_MAP_END - 4n, 8)).toBe(PF_VECTOR)
    expect(accessException(IDENTITY_MAP_END - 8n, 8)).toBeUndefined()
  })

  const faulting: [string, GuestStep][] = [
    ['#GP (non-canonical write)', { op: 'write', gva: NON_CANONICAL, value: 0, expectFault: true }],
    ['#PF (read past the identity map)', { op: 'read', gva: IDENTITY_MAP_END, expectFault: true }],
  ]
  test.each(faulting)('%s with the initial IDT (limit 0) is a triple fault: shutdown, again on re-entry', async (_, step) => {
    const { vcpu } = await guest([step, { op: 'signal', port: 1, value: 1 }])
    expect(await run(vcpu)).toEqual({ kind: 'shutdown' })
    expect(await run(vcpu)).toEqual({ kind: 'shutdown' })
    expect(await vcpu.programStep()).toBe(0)
  })

  test('an IDT of zeroed gates in RAM is a triple fault too (#NP, then #DF)', async () => {
    const { vcpu } = await guest([{ op: 'lidt', base: GPA, limit: 0xfff }, faulting[0]![1]])
    expect(await run(vcpu)).toEqual({ kind: 'shutdown' })
  })

  test('a gate on MMIO: KVM_INTERNAL_ERROR_DELIVERY_EV with the gate GPA in data[3] (test_mmio_during_vectoring)', async () => {
    const { vcpu } = await guest([{ op: 'lidt', base: MMIO_GPA, limit: 0xfff }, faulting[0]![1]])
    expect(await run(vcpu)).toEqual({
      kind: 'internal_error',
      suberror: KVM_INTERNAL_ERROR_DELIVERY_EV,
      // vectoring info: valid | hardware exception | error code | #GP; EPT violation; read, GLA valid, translated
      data: [0x8000_0b0dn, 48n, 0x181n, BigInt(MMIO_GPA + 13 * 16), 0n],
    })
  })

  test('a #GP gate past the limit escalates to #DF, whose gate on MMIO is what KVM reports', async () => {
    const { vcpu } = await guest([{ op: 'lidt', base: MMIO_GPA, limit: 8 * 16 + 15 }, faulting[1]![1]])
    const exit = await run(vcpu)
    expect(exit).toMatchObject({ kind: 'internal_error', suberror: KVM_INTERNAL_ERROR_DELIVERY_EV })
    if (exit.kind === 'internal_error') expect([exit.data[0], exit.data[3]]).toEqual([0x8000_0b08n, BigInt(MMIO_GPA + 8 * 16)])
  })

  test('a present gate would run a handler no program has: an emulation failure', async () => {
    const { vcpu, mem } = await guest([{ op: 'lidt', base: GPA, limit: 0xfff }, faulting[0]![1]])
    await mem.write(13 * 16 + 5, Uint8Array.of(0x8e)) // P | 64-bit interrupt gate
    expect(await run(vcpu)).toMatchObject({ kind: 'internal_error', suberror: KVM_INTERNAL_ERROR_EMULATION })
  })
})

describe('instruction fetch', () => {
  test('deleting the boot slot fails the next fetch: KVM_INTERNAL_ERROR_EMULATION in the running step', async () => {
    const { vm, vcpu } = await guest([{ op: 'signal', port: 1, value: 0 }, { op: 'spin_while_eq', gva: GPA, value: 0 }])
    expect(await nextSignal(vcpu)).toBe(0)
    const running = run(vcpu)
    await new Promise((r) => setTimeout(r, 20))
    await vm.setUserMemoryRegion({ slot: 0, flags: 0, guestPhysAddr: 0, memorySize: 0, userspaceAddr: 0 })
    expect(await running).toEqual({
      kind: 'internal_error',
      suberror: KVM_INTERNAL_ERROR_EMULATION,
      data: [0n, 48n, 0x184n, 0n, 0n, 0n], // no instruction bytes; EPT violation on a fetch
    })
    expect(await vcpu.programStep()).toBe(1)
  })

  test('a vCPU without a program fetches at the reset vector, where no memslot is: emulation failure', async () => {
    const vm = await createEmulatorBackend().createVm()
    const vcpu = await vm.createVcpu(0)
    expect(await vcpu.getRip()).toBe(0xfff0n)
    expect(await vcpu.programStep()).toBeNull()
    expect(await run(vcpu)).toMatchObject({ kind: 'internal_error', suberror: KVM_INTERNAL_ERROR_EMULATION })
  })
})

describe('loadProgram refuses what every backend refuses, with a RangeError naming the step', () => {
  const cases: [string, unknown, RegExp][] = [
    ['a value wider than its width', { op: 'write', gva: GPA, width: 1, value: 256 }, /^step 0 \(write\): value 256 is out of range/],
    ['an access past the identity map', { op: 'read', gva: IDENTITY_MAP_END }, /^step 0 \(read\): gva .* outside the identity map/],
    ['a jump to a missing step', { op: 'jump', to: 1 }, /^step 0 \(jump\): to 1: there is no step 1/],
    ['a signal value above 32 bits', { op: 'signal', port: 1, value: 2 ** 32 }, /^step 0 \(signal\): value/],
    ['an unknown op', { op: 'nop' }, /^step 0 \(nop\): unknown op/],
    ['an unsafe number', { op: 'read', gva: 2 ** 60 }, /pass a bigint/],
  ]
  test.each(cases)('%s', async (_, step, message) => {
    const vcpu = await (await createEmulatorBackend().createVm()).createVcpu(0)
    await expect(vcpu.loadProgram({ steps: [step as GuestStep] })).rejects.toThrow(RangeError)
    await expect(vcpu.loadProgram({ steps: [step as GuestStep] })).rejects.toThrow(message)
  })

  test('expectFault lifts the identity-map rule; ids past the boot slot and overlong programs are refused', async () => {
    const vm = await createEmulatorBackend().createVm()
    const vcpu = await vm.createVcpu(0)
    await vcpu.loadProgram({ steps: [{ op: 'write', gva: NON_CANONICAL, value: 0, expectFault: true }] })
    const far = await vm.createVcpu(96)
    await expect(far.loadProgram({ steps: [] })).rejects.toThrow(/vCPU id 96: the boot slot has areas for ids 0..95/)
    const long = Array.from({ length: 768 }, (): GuestStep => ({ op: 'hlt' }))
    await expect(vcpu.loadProgram({ steps: long })).rejects.toThrow(/768 steps do not fit/)
    await vcpu.loadProgram({ steps: long.slice(1) })
  })
})
