// Where a guest access lands (guest-memory.ts): the memslot's host memory, a guest_memfd file, MMIO, or
// a memory fault, and what it records (dirty pages), driven by guest programs through the contract.

import { describe, expect, test } from 'vitest'
import {
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  KVM_MEM_GUEST_MEMFD,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_READONLY,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  KVM_MEMORY_EXIT_FLAG_PRIVATE,
  KVM_X86_SW_PROTECTED_VM,
} from '../../harness/uapi/kvm.ts'
import { createEmulatorBackend } from './index.ts'
import { GPA, guest, le, nextSignal, PAGE, run, signalValue, sleep } from './spec-support.ts'

const dirtyPages = (log: Uint8Array) => [...log].flatMap((byte, i) => [0, 1, 2, 3, 4, 5, 6, 7].filter((b) => byte & (1 << b)).map((b) => i * 8 + b))

describe('memslot host memory', () => {
  test('guest writes to a LOG_DIRTY_PAGES slot mark their pages dirty; reads do not', async () => {
    const { vm, vcpu } = await guest(
      [
        { op: 'read', gva: GPA + 5 * PAGE },
        { op: 'write', gva: GPA + PAGE, value: 1 },
        { op: 'touch_pages', gva: GPA + 3 * PAGE, pages: 2, stride: 2 * PAGE, write: true, value: 2n },
        { op: 'fill', gva: GPA + 8 * PAGE - 1, length: 2, byte: 3 },
        { op: 'touch_pages', gva: GPA, pages: 10, stride: PAGE, write: false, value: 0 },
        { op: 'hlt' },
      ],
      { slotPages: 10, flags: KVM_MEM_LOG_DIRTY_PAGES },
    )
    expect(await run(vcpu)).toEqual({ kind: 'hlt' })
    expect(dirtyPages(await vm.getDirtyLog(10))).toEqual([1, 3, 5, 7, 8])
    expect(dirtyPages(await vm.getDirtyLog(10))).toEqual([])
  })

  test('a READONLY slot: reads see its memory, writes exit as MMIO writes and leave it alone', async () => {
    const { vcpu, mem } = await guest(
      [
        { op: 'read', gva: GPA },
        { op: 'write', gva: GPA, width: 2, value: 0xbeef },
        { op: 'signal', port: 1 },
      ],
      { flags: KVM_MEM_READONLY },
    )
    await mem.write(0, le(42))
    expect(await run(vcpu)).toEqual({ kind: 'mmio', physAddr: BigInt(GPA), len: 2, isWrite: true, data: le(0xbeef, 2) })
    expect(await nextSignal(vcpu)).toBe(42)
    expect(await mem.read(0, 8)).toEqual(le(42))
  })

  test('a host mapping that is gone: KVM_EXIT_MEMORY_FAULT (EFAULT) for the page, retried on re-entry', async () => {
    const { vcpu, mem } = await guest([{ op: 'read', gva: GPA + PAGE + 8 }, { op: 'signal', port: 1 }])
    await mem.close()
    const fault = { kind: 'memory_fault', errno: 'EFAULT', flags: 0n, gpa: BigInt(GPA + PAGE), size: 4096n }
    expect(await run(vcpu)).toEqual(fault)
    expect(await run(vcpu)).toEqual(fault)
  })

  test('a spinning guest sees a host write, a move of its slot, then the slot deleted (MMIO)', async () => {
    const { vm, vcpu, mem } = await guest([
      { op: 'spin_while_eq', gva: GPA, value: 0 },
      { op: 'signal', port: 1 },
      { op: 'spin_while_eq', gva: GPA, value: 5 },
      { op: 'signal', port: 2 },
      { op: 'spin_while_eq', gva: GPA, value: 7 },
    ])
    const region = { slot: 10, flags: 0, memorySize: 2 * PAGE, userspaceAddr: mem.addr }
    await mem.write(PAGE, le(7))
    let running = run(vcpu)
    await sleep(10)
    await mem.write(0, le(5))
    expect(signalValue(await running)).toBe(5)
    running = run(vcpu)
    await sleep(10)
    // The slot now starts a page lower, so GPA reads the mapping's second page.
    await vm.setUserMemoryRegion({ ...region, guestPhysAddr: GPA - PAGE })
    expect(await running).toMatchObject({ kind: 'io', port: 2, data: le(7, 4) })
    running = run(vcpu)
    await sleep(10)
    await vm.setUserMemoryRegion({ ...region, guestPhysAddr: 0, memorySize: 0 })
    expect(await running).toMatchObject({ kind: 'mmio', physAddr: BigInt(GPA), len: 8, isWrite: false })
  })
})

describe('guest_memfd slots (upstream semantics)', () => {
  test('bound with MMAP (KVM_MEMSLOT_GMEM_ONLY): shared accesses use the file, not userspace_addr (test_guest_memfd_guest)', async () => {
    const kvm = createEmulatorBackend()
    const vm = await kvm.createVm()
    const gmem = await vm.createGuestMemfd({ size: 2 * PAGE, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED })
    await vm.setUserMemoryRegion2({
      slot: 1, flags: KVM_MEM_GUEST_MEMFD, guestPhysAddr: GPA, memorySize: PAGE, userspaceAddr: 0, guestMemfd: gmem.fd, guestMemfdOffset: PAGE,
    })
    const host = await gmem.mmap({ length: 2 * PAGE })
    await host.fill(PAGE, PAGE, 0xaa)
    const vcpu = await vm.createVcpu(0)
    await vcpu.loadProgram({
      steps: [{ op: 'check', gva: GPA, length: PAGE, byte: 0xaa }, { op: 'signal', port: 1 }, { op: 'fill', gva: GPA, length: PAGE, byte: 0xff }],
    })
    expect(await nextSignal(vcpu)).toBe(0)
    expect(await run(vcpu)).toEqual({ kind: 'hlt' })
    expect(await host.findMismatch(PAGE, PAGE, 0xff)).toBe(-1n)
    expect(await host.findMismatch(0, PAGE, 0)).toBe(-1n)
    // Once the file is gone, kvm_gmem_get_pfn() has nothing to give: a memory fault exit.
    await host.close()
    await gmem.close()
    await vcpu.loadProgram({ steps: [{ op: 'read', gva: GPA }] })
    expect(await run(vcpu)).toEqual({ kind: 'memory_fault', errno: 'EFAULT', flags: 0n, gpa: BigInt(GPA), size: 4096n })
  })

  test('bound without MMAP: shared gfns use userspace_addr, private ones (KVM_SET_MEMORY_ATTRIBUTES) the file', async () => {
    const kvm = createEmulatorBackend()
    const vm = await kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM })
    const gmem = await vm.createGuestMemfd({ size: PAGE })
    const mem = await kvm.mmap({ size: PAGE, backing: 'anonymous' })
    await mem.write(0, le(3))
    await vm.setUserMemoryRegion2({
      slot: 1, flags: KVM_MEM_GUEST_MEMFD, guestPhysAddr: GPA, memorySize: PAGE, userspaceAddr: mem.addr, guestMemfd: gmem.fd,
    })
    const vcpu = await vm.createVcpu(0)
    const program = { steps: [{ op: 'read', gva: GPA } as const, { op: 'signal', port: 1 } as const, { op: 'write', gva: GPA, value: 9 } as const] }
    await vcpu.loadProgram(program)
    expect(await nextSignal(vcpu)).toBe(3)
    await vm.setMemoryAttributes({ address: GPA, size: PAGE, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE })
    await vcpu.loadProgram(program)
    expect(await nextSignal(vcpu)).toBe(0) // the file's page, never written
    expect(await run(vcpu)).toEqual({ kind: 'hlt' })
    expect(await mem.read(0, 8)).toEqual(le(3)) // the private write went to the file
    await vcpu.loadProgram(program)
    expect(await nextSignal(vcpu)).toBe(9)
  })

  test('a private gfn in a slot without guest_memfd: memory fault with KVM_MEMORY_EXIT_FLAG_PRIVATE', async () => {
    const { vm, vcpu } = await guest([{ op: 'write', gva: GPA + PAGE, value: 1 }], { type: KVM_X86_SW_PROTECTED_VM })
    await vm.setMemoryAttributes({ address: GPA + PAGE, size: PAGE, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE })
    expect(await run(vcpu)).toEqual({
      kind: 'memory_fault', errno: 'EFAULT', flags: KVM_MEMORY_EXIT_FLAG_PRIVATE, gpa: BigInt(GPA + PAGE), size: 4096n,
    })
  })
})
