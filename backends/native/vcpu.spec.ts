// vCPU threads: KVM_RUN on each vCPU's own thread, exits through the thread-safe function, the
// deadline kick, and closing a VM whose vCPU is running. Guests here are a few real-mode bytes placed
// by hand (the guest-code compiler is not involved): CS base 0, IP 0x1000, one memslot at GPA 0.

import { afterAll, describe, expect, test } from 'vitest'

import type { Backend, HostMapping, Vm } from '../../harness/backend.ts'
import { VcpuTimeout } from '../../harness/errors.ts'
import { UFFDIO_REGISTER_MODE_MISSING } from '../../harness/uapi/userfaultfd.ts'
import { load, nativeBackend } from './spec-support.ts'
import { shapeExit, type NativeVcpu } from './vcpu.ts'

afterAll(async () => {
  if (load.available) await load.backend.close()
})

const CODE_GPA = 0x1000
const SLOT_SIZE = 0x4000 // GPA [0, 16 KiB); anything above is MMIO

/** struct kvm_sregs: cs is the first kvm_segment (base u64 @0, selector u16 @12). */
function realModeSregs(sregs: Uint8Array): Uint8Array {
  const out = sregs.slice()
  const dv = new DataView(out.buffer)
  dv.setBigUint64(0, 0n, true)
  dv.setUint16(12, 0, true)
  return out
}

/** struct kvm_regs: rip @128, rflags @136. */
function regsAt(rip: number): Uint8Array {
  const regs = new Uint8Array(144)
  const dv = new DataView(regs.buffer)
  dv.setBigUint64(128, BigInt(rip), true)
  dv.setBigUint64(136, 2n, true)
  return regs
}

async function guest(kvm: Backend, code: number[]): Promise<{ vm: Vm; vcpu: NativeVcpu; mem: HostMapping }> {
  const vm = await kvm.createVm()
  const mem = await kvm.mmap({ size: SLOT_SIZE, backing: 'anonymous' })
  await mem.write(CODE_GPA, new Uint8Array(code))
  await vm.setUserMemoryRegion({ slot: 0, flags: 0, guestPhysAddr: 0, memorySize: SLOT_SIZE, userspaceAddr: mem.addr })
  const vcpu = (await vm.createVcpu(0)) as NativeVcpu
  await vcpu.loadRaw({ sregs: realModeSregs(await vcpu.getSregsRaw()), regs: regsAt(CODE_GPA) })
  return { vm, vcpu, mem }
}

const JMP_SELF = [0xeb, 0xfe] // jmp $

describe('native vCPU threads', () => {
  test('test_zero_memory_regions: no memslots, KVM_SET_NR_MMU_PAGES 64, KVM_RUN gives internal_error', async (ctx) => {
    const vm = await nativeBackend(ctx).createVm()
    await vm.setNrMmuPages(64)
    const vcpu = await vm.createVcpu(0)
    const exit = await vcpu.run({ timeoutMs: 5000 })
    expect(exit.kind).toBe('internal_error')
    await vm.close()
  })

  test('io, mmio (answered with mmioData) and hlt exits from a real-mode guest', async (ctx) => {
    const kvm = nativeBackend(ctx)
    const { vm, vcpu, mem } = await guest(kvm, [
      0xb0, 0x42, //       mov al, 0x42
      0xe6, 0x10, //       out 0x10, al
      0xbb, 0x00, 0x80, // mov bx, 0x8000   (no memslot there)
      0x8a, 0x07, //       mov al, [bx]
      0xe6, 0x11, //       out 0x11, al
      0xf4, //             hlt
    ])
    expect(await vcpu.run({ timeoutMs: 5000 })).toEqual({
      kind: 'io', port: 0x10, size: 1, direction: 'out', count: 1, data: new Uint8Array([0x42]),
    })
    const mmio = await vcpu.run({ timeoutMs: 5000 })
    expect(mmio).toMatchObject({ kind: 'mmio', physAddr: 0x8000n, len: 1, isWrite: false })
    expect(await vcpu.run({ timeoutMs: 5000, mmioData: new Uint8Array([0x99]) })).toMatchObject({
      kind: 'io', port: 0x11, direction: 'out', data: new Uint8Array([0x99]),
    })
    expect(await vcpu.run({ timeoutMs: 5000 })).toEqual({ kind: 'hlt' })
    expect(await vcpu.getRip()).toBe(BigInt(CODE_GPA + 12))
    await vm.close()
    await mem.close()
  })

  test('a run that never exits is stopped by its deadline within deadline + 1 s', async (ctx) => {
    const kvm = nativeBackend(ctx)
    const { vm, vcpu, mem } = await guest(kvm, JMP_SELF)
    const started = performance.now()
    const err = await vcpu.run({ timeoutMs: 300 }).then(() => null, (e: unknown) => e)
    const took = performance.now() - started
    expect(VcpuTimeout.is(err), String(err)).toBe(true)
    expect(took).toBeGreaterThanOrEqual(290)
    expect(took).toBeLessThan(1300)
    // The vCPU is idle again and runs on; kick() from the event loop stops it the same way.
    const running = vcpu.run()
    await new Promise((r) => setTimeout(r, 50))
    await expect(vcpu.getRip()).rejects.toMatchObject({ code: 'EBUSY' })
    await vcpu.kick()
    expect(await running).toEqual({ kind: 'intr' })
    expect(await vcpu.getRip()).toBe(BigInt(CODE_GPA))
    await vm.close()
    await mem.close()
  })

  test('two vCPUs spin at once on their own threads and both stop at their deadlines', async (ctx) => {
    const kvm = nativeBackend(ctx)
    const vm = await kvm.createVm()
    const mem = await kvm.mmap({ size: SLOT_SIZE, backing: 'anonymous' })
    await mem.write(CODE_GPA, new Uint8Array(JMP_SELF))
    await vm.setUserMemoryRegion({ slot: 0, flags: 0, guestPhysAddr: 0, memorySize: SLOT_SIZE, userspaceAddr: mem.addr })
    const vcpus = await Promise.all([0, 1].map(async (id) => {
      const v = (await vm.createVcpu(id)) as NativeVcpu
      await v.loadRaw({ sregs: realModeSregs(await v.getSregsRaw()), regs: regsAt(CODE_GPA) })
      return v
    }))
    const started = performance.now()
    const results = await Promise.allSettled(vcpus.map((v) => v.run({ timeoutMs: 200 })))
    expect(results.map((r) => r.status === 'rejected' && VcpuTimeout.is(r.reason))).toEqual([true, true])
    expect(performance.now() - started).toBeLessThan(1200)
    await vm.close()
    await mem.close()
  })

  test('demand paging: a vCPU blocked on a MISSING page inside KVM_RUN resumes after UFFDIO_COPY', async (ctx) => {
    const kvm = nativeBackend(ctx)
    const { vm, vcpu, mem } = await guest(kvm, [
      0xb8, 0x00, 0x10, // mov ax, 0x1000
      0x8e, 0xd8, //       mov ds, ax        (DS base 0x10000: the uffd slot)
      0xa0, 0x00, 0x00, // mov al, [0]
      0xe6, 0x10, //       out 0x10, al
      0xf4, //             hlt
    ])
    const data = await kvm.mmap({ size: 0x10000, backing: 'anonymous' })
    await vm.setUserMemoryRegion({ slot: 1, flags: 0, guestPhysAddr: 0x10000, memorySize: 0x10000, userspaceAddr: data.addr })
    const uffd = await kvm.openUffd({ via: 'dev' })
    await uffd.api(0)
    await uffd.register({ start: data.addr, len: data.size }, UFFDIO_REGISTER_MODE_MISSING)
    const running = vcpu.run({ timeoutMs: 10_000 })
    let events = await uffd.readEvents()
    for (let i = 0; events.length === 0 && i < 400; i++) {
      await new Promise((r) => setTimeout(r, 5))
      events = await uffd.readEvents()
    }
    expect(events).toMatchObject([{ kind: 'pagefault', address: data.addr }])
    await uffd.copy({ dst: data.addr, data: new Uint8Array(4096).fill(0x77) })
    expect(await running).toMatchObject({ kind: 'io', port: 0x10, data: new Uint8Array([0x77]) })
    await vm.close()
    await Promise.all([uffd.close(), data.close(), mem.close()])
  })

  test('a kick does not interrupt a wait on a userfaultfd fault: the deadline gives up after the grace second', async (ctx) => {
    const kvm = nativeBackend(ctx)
    const { vm, vcpu, mem } = await guest(kvm, [0xb8, 0x00, 0x10, 0x8e, 0xd8, 0xa0, 0x00, 0x00, 0xe6, 0x10, 0xf4])
    const data = await kvm.mmap({ size: 0x10000, backing: 'anonymous' })
    await vm.setUserMemoryRegion({ slot: 1, flags: 0, guestPhysAddr: 0x10000, memorySize: 0x10000, userspaceAddr: data.addr })
    const uffd = await kvm.openUffd({ via: 'syscall' })
    await uffd.api(0)
    await uffd.register({ start: data.addr, len: data.size }, UFFDIO_REGISTER_MODE_MISSING)
    const started = performance.now()
    const err = await vcpu.run({ timeoutMs: 200 }).then(() => null, (e: unknown) => e)
    const took = performance.now() - started
    expect(VcpuTimeout.is(err), String(err)).toBe(true)
    expect(took).toBeGreaterThanOrEqual(1150) // 200 ms deadline + 1 s grace: the kick was not enough
    expect(took).toBeLessThan(2200)
    await expect(vcpu.run()).rejects.toMatchObject({ code: 'EBUSY' })
    // Resolving the fault lets KVM_RUN return (the kick's signal is still pending); the vCPU is idle again.
    await uffd.copy({ dst: data.addr, data: new Uint8Array(4096) })
    let rip: unknown = null
    for (let i = 0; i < 100 && typeof rip !== 'bigint'; i++) {
      await new Promise((r) => setTimeout(r, 10))
      rip = await vcpu.getRip().catch((e: unknown) => e)
    }
    expect(typeof rip).toBe('bigint')
    await vm.close()
    await Promise.all([uffd.close(), data.close(), mem.close()])
  })

  test('closing a VM whose vCPU is running neither hangs nor crashes', async (ctx) => {
    const kvm = nativeBackend(ctx)
    const { vm, vcpu, mem } = await guest(kvm, JMP_SELF)
    const running = vcpu.run()
    await new Promise((r) => setTimeout(r, 50))
    const started = performance.now()
    await vm.close()
    const exit = await running
    expect(exit).toEqual({ kind: 'intr' })
    expect(performance.now() - started).toBeLessThan(1000)
    await expect(vcpu.run()).rejects.toMatchObject({ name: 'KvmError', code: 'EBADF' })
    await mem.close()
  })

  test('the event loop stays free while a vCPU spins', async (ctx) => {
    const kvm = nativeBackend(ctx)
    const { vm, vcpu, mem } = await guest(kvm, JMP_SELF)
    const running = vcpu.run({ timeoutMs: 500 }).catch((e: unknown) => e)
    let ticks = 0
    const timer = setInterval(() => ticks++, 10)
    await running
    clearInterval(timer)
    expect(ticks).toBeGreaterThan(20)
    await vm.close()
    await mem.close()
  })

  test('KVM_EXIT_MEMORY_FAULT (never raised on this host) is decoded as a typed exit', () => {
    expect(shapeExit({ kind: 'memory_fault', exitReason: 39, errno: 14, flags: 16n, gpa: 0x1000n, size: 4096n }))
      .toEqual({ kind: 'memory_fault', errno: 'EFAULT', flags: 16n, gpa: 0x1000n, size: 4096n })
    expect(shapeExit({ kind: 'memory_fault', exitReason: 39, errno: 133, flags: 0n, gpa: 0n, size: 0n }))
      .toMatchObject({ errno: 'EHWPOISON' })
    expect(shapeExit({ kind: 'other', exitReason: 40 })).toEqual({ kind: 'other', exitReason: 40 })
  })
})
