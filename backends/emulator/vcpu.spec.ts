// The vCPU as a kernel object (vcpu.ts, wired in contract/vcpu.ts): KVM_CREATE_VCPU's rules, the boot memslot,
// KVM_RUN's entry checks, kick, deadlines, EBUSY, closing while running, and the event loop staying free.

import { describe, expect, test } from 'vitest'
import { VcpuTimeout } from '../../harness/errors.ts'
import { KVM_CAP_MAX_VCPUS } from '../../harness/uapi/kvm.ts'
import { KVM_CAP_MAX_VCPU_ID } from './caps.ts'
import { createEmulatorBackend, defineProfile, getProfile } from './index.ts'
import { GPA, guest, le, nextSignal, PAGE, run, sleep } from './spec-support.ts'

const SPIN = [{ op: 'spin_while_eq', gva: GPA, value: 0 } as const, { op: 'signal', port: 1 } as const]

describe('KVM_CREATE_VCPU', () => {
  test('ids up to 4 x KVM_CAP_MAX_VCPUS (KVM_CAP_MAX_VCPU_ID); then EINVAL', async () => {
    for (const [profile, maxId] of [['upstream-6.18', 16384], ['pvm-6.18', 4096]] as const) {
      const kvm = createEmulatorBackend({ profile })
      expect(await kvm.checkExtension(KVM_CAP_MAX_VCPU_ID)).toBe(maxId)
      expect(await kvm.checkExtension(KVM_CAP_MAX_VCPUS)).toBe(maxId / 4)
      const vm = await kvm.createVm()
      expect((await vm.createVcpu(maxId - 1)).id).toBe(maxId - 1)
      await expect(vm.createVcpu(maxId)).rejects.toMatchObject({ code: 'EINVAL', op: 'KVM_CREATE_VCPU' })
      await expect(vm.createVcpu(-1)).rejects.toMatchObject({ code: 'EINVAL' }) // (u32)-1
    }
  })

  test('a taken id is EEXIST, also once its fd is closed; vCPUs past KVM_MAX_VCPUS are EINVAL', async () => {
    const two = defineProfile(getProfile('upstream-6.18'), { name: 'two-vcpus', description: 'spec', maxVcpus: 2 })
    const kvm = createEmulatorBackend({ profile: two })
    const vm = await kvm.createVm()
    const v0 = await vm.createVcpu(0)
    expect(v0.fd).toBe(vm.fd + 1) // the lowest free fd
    await expect(vm.createVcpu(0)).rejects.toMatchObject({ code: 'EEXIST', op: 'KVM_CREATE_VCPU' })
    await v0.close()
    await expect(vm.createVcpu(0)).rejects.toMatchObject({ code: 'EEXIST' })
    await vm.createVcpu(5)
    await expect(vm.createVcpu(1)).rejects.toMatchObject({ code: 'EINVAL' })
  })
})

describe('loadProgram and the boot memslot', () => {
  test('the first loadProgram of a VM creates memslot 0 at GPA 0 (2 MiB) through the memslot rules', async () => {
    const vm = await createEmulatorBackend().createVm()
    const [a, b] = [await vm.createVcpu(0), await vm.createVcpu(1)]
    await Promise.all([a.loadProgram({ steps: [] }), b.loadProgram({ steps: [{ op: 'signal', port: 1, value: 2 }] })])
    // Slot 0 exists now: recreating it with other memory is EINVAL, and its GPAs are taken.
    const region = { slot: 0, flags: 0, guestPhysAddr: 0, memorySize: 0x20_0000, userspaceAddr: 0x1000_0000 }
    await expect(vm.setUserMemoryRegion(region)).rejects.toMatchObject({ code: 'EINVAL' })
    await expect(vm.setUserMemoryRegion({ ...region, slot: 3 })).rejects.toMatchObject({ code: 'EEXIST' })
    expect(await run(a)).toEqual({ kind: 'hlt' })
    expect(await nextSignal(b)).toBe(2)
  })

  test('a VM whose slot 0 or low GPAs are taken: loadProgram rejects with that errno', async () => {
    const kvm = createEmulatorBackend()
    const vm = await kvm.createVm()
    const mem = await kvm.mmap({ size: PAGE, backing: 'anonymous' })
    await vm.setUserMemoryRegion({ slot: 4, flags: 0, guestPhysAddr: 0x10_0000, memorySize: PAGE, userspaceAddr: mem.addr })
    const vcpu = await vm.createVcpu(0)
    await expect(vcpu.loadProgram({ steps: [] })).rejects.toMatchObject({ code: 'EEXIST', op: 'KVM_SET_USER_MEMORY_REGION' })
    await vm.setUserMemoryRegion({ slot: 4, flags: 0, guestPhysAddr: 0, memorySize: 0, userspaceAddr: 0 })
    await vcpu.loadProgram({ steps: [] }) // nothing was left behind by the failed attempt
  })
})

describe('KVM_RUN', () => {
  test('shadow paging (pvm-6.18) before any memslot or KVM_SET_NR_MMU_PAGES: ENOSPC; the TDP MMU has no such check', async () => {
    const vm = await createEmulatorBackend({ profile: 'pvm-6.18' }).createVm()
    const vcpu = await vm.createVcpu(0)
    await expect(vcpu.run()).rejects.toMatchObject({ code: 'ENOSPC', op: 'KVM_RUN' })
    await vm.setNrMmuPages(64)
    expect(await run(vcpu)).toMatchObject({ kind: 'internal_error', suberror: 1 })
    const other = await createEmulatorBackend({ profile: 'pvm-6.18' }).createVm()
    const ready = await other.createVcpu(0)
    await ready.loadProgram({ steps: [] }) // the boot memslot gives the VM its default MMU pages
    expect(await run(ready)).toEqual({ kind: 'hlt' })
    const tdp = await (await createEmulatorBackend().createVm()).createVcpu(0)
    expect(await run(tdp)).toMatchObject({ kind: 'internal_error', suberror: 1 })
  })

  test('mmioData past 8 bytes is a RangeError; ioData past the last io exit is EINVAL; a bad deadline is a TypeError', async () => {
    const { vcpu } = await guest([{ op: 'signal', port: 1, value: 1 }])
    await expect(vcpu.run({ mmioData: new Uint8Array(9) })).rejects.toThrow(RangeError)
    await expect(vcpu.run({ ioData: new Uint8Array(1) })).rejects.toMatchObject({ code: 'EINVAL', op: 'KVM_RUN' })
    await expect(vcpu.run({ timeoutMs: -1 })).rejects.toThrow(TypeError)
    expect(await nextSignal(vcpu)).toBe(1)
    expect(await run(vcpu, { ioData: new Uint8Array(4) })).toEqual({ kind: 'hlt' })
  })

  test('kick stops a spinning run with intr and it resumes where it was; a kick with no run in flight does nothing', async () => {
    const { vcpu, mem } = await guest(SPIN)
    const running = vcpu.run()
    await sleep(20)
    await vcpu.kick()
    expect(await running).toEqual({ kind: 'intr' })
    expect(await vcpu.programStep()).toBe(0)
    await vcpu.kick()
    await mem.write(0, le(3))
    expect(await nextSignal(vcpu)).toBe(3)
  })

  test('a deadline rejects with VcpuTimeout soon after it passes; the vCPU is idle again', async () => {
    const { vcpu, mem } = await guest(SPIN)
    const started = performance.now()
    const err = await vcpu.run({ timeoutMs: 100 }).catch((e: unknown) => e)
    const took = performance.now() - started
    expect(VcpuTimeout.is(err), String(err)).toBe(true)
    expect(took).toBeGreaterThanOrEqual(99)
    expect(took).toBeLessThan(400)
    await mem.write(0, le(4))
    expect(await nextSignal(vcpu)).toBe(4)
  })

  test('while a run is in flight every other vCPU ioctl is EBUSY; kick is not', async () => {
    const { vcpu } = await guest(SPIN)
    const running = vcpu.run()
    await expect(vcpu.run()).rejects.toMatchObject({ code: 'EBUSY', op: 'KVM_RUN' })
    await expect(vcpu.getRip()).rejects.toMatchObject({ code: 'EBUSY', op: 'KVM_GET_REGS' })
    await expect(vcpu.programStep()).rejects.toMatchObject({ code: 'EBUSY', op: 'KVM_GET_REGS' })
    await expect(vcpu.loadProgram({ steps: [] })).rejects.toMatchObject({ code: 'EBUSY', op: 'KVM_SET_SREGS' })
    await expect(vcpu.preFaultMemory({ gpa: 0, size: PAGE })).rejects.toMatchObject({ code: 'EBUSY', op: 'KVM_PRE_FAULT_MEMORY' })
    await vcpu.kick()
    expect(await running).toEqual({ kind: 'intr' })
  })

  test('KVM_PRE_FAULT_MEMORY answers as the ioctl does (a PreFaultResult), per profile (pre-fault.spec.ts has the rules)', async () => {
    const tdp = await (await createEmulatorBackend({ profile: 'upstream-6.18' }).createVm()).createVcpu(0)
    expect(await tdp.preFaultMemory({ gpa: 0, size: PAGE })).toEqual({ ok: false, error: { code: 'ENOENT', errno: 2 }, gpa: 0n, size: 4096n })
    const pvm = await (await createEmulatorBackend({ profile: 'pvm-6.18' }).createVm()).createVcpu(0)
    expect(await pvm.preFaultMemory({ gpa: 0, size: PAGE })).toMatchObject({ ok: false, error: { code: 'ENOSPC' } })
  })

  test('getRip is the reset vector without a program, then code + step * 16 in the vCPU\'s area', async () => {
    const vm = await createEmulatorBackend().createVm()
    const vcpu = await vm.createVcpu(2)
    expect(await vcpu.getRip()).toBe(0xfff0n)
    await vcpu.loadProgram({ steps: [{ op: 'hlt' }, { op: 'hlt' }] })
    expect(await vcpu.getRip()).toBe(0x8_0000n + 2n * 0x4000n)
    await run(vcpu)
    expect(await vcpu.getRip()).toBe(0x8_0000n + 2n * 0x4000n + 16n)
    await run(vcpu)
    await run(vcpu)
    expect([await vcpu.getRip(), await vcpu.programStep()]).toEqual([0x8_0000n + 2n * 0x4000n + 32n, 'halt'])
  })
})

describe('close while running, and sharing the event loop', () => {
  test('closing the vCPU while it runs: intr, then EBADF from every method', async () => {
    const { vcpu } = await guest(SPIN)
    const running = vcpu.run()
    await sleep(10)
    await vcpu.close()
    expect(await running).toEqual({ kind: 'intr' })
    for (const [op, call] of [
      ['KVM_RUN', () => vcpu.run()],
      ['KVM_GET_REGS', () => vcpu.getRip()],
      ['KVM_GET_REGS', () => vcpu.programStep()],
      ['KVM_SET_SREGS', () => vcpu.loadProgram({ steps: [] })],
      ['KVM_PRE_FAULT_MEMORY', () => vcpu.preFaultMemory({ gpa: 0, size: PAGE })],
      ['kick', () => vcpu.kick()],
      ['close', () => vcpu.close()],
    ] as const) {
      await expect(call(), op).rejects.toMatchObject({ name: 'KvmError', code: 'EBADF', op })
    }
  })

  test('closing the VM stops and closes its vCPUs; their fds are free again', async () => {
    const { kvm, vm, vcpu } = await guest(SPIN)
    const running = vcpu.run()
    await sleep(10)
    await vm.close()
    expect(await running).toEqual({ kind: 'intr' })
    await expect(vcpu.run()).rejects.toMatchObject({ code: 'EBADF', op: 'KVM_RUN' })
    const next = await kvm.createVm()
    expect(next.fd).toBe(vm.fd)
  })

  test('two vCPUs of one VM run their own programs at once; timers keep firing while they spin', async () => {
    const { vm, vcpu } = await guest(SPIN)
    const writer = await vm.createVcpu(1)
    await writer.loadProgram({ steps: [{ op: 'jump', to: 1 }, { op: 'jump', to: 0 }] })
    const spinning = writer.run({ timeoutMs: 200 }).catch((e: unknown) => e)
    let ticks = 0
    const timer = setInterval(() => ticks++, 10)
    const waiting = vcpu.run({ timeoutMs: 5000 })
    await sleep(50)
    const other = await vm.createVcpu(2)
    await other.loadProgram({ steps: [{ op: 'write', gva: GPA, value: 6 }] })
    expect(await run(other)).toEqual({ kind: 'hlt' })
    expect(await waiting).toMatchObject({ kind: 'io', data: le(6, 4) })
    expect(VcpuTimeout.is(await spinning)).toBe(true)
    clearInterval(timer)
    expect(ticks).toBeGreaterThan(10)
  })
})
