// Helpers for the emulator's vCPU specs: a VM with a test memslot, little-endian values, and running a
// vCPU to its next exit with a deadline so a stuck spec fails instead of hanging.

import { expect } from 'vitest'
import type { Backend, Backing, HostMapping, RunOptions, UserfaultBitmap, Vcpu, VcpuExit, Vm } from '../../harness/backend.ts'
import type { GuestStep } from '../../harness/guest-program.ts'
import { createEmulatorBackend } from './index.ts'

/** Where the specs put their memslot (set_memory_region_test's MEM_REGION_GPA), and a GPA with no memslot. */
export const GPA = 0xc000_0000
export const MMIO_GPA = 0xd000_0000
export const PAGE = 4096

export function le(value: number | bigint, width = 8): Uint8Array {
  const bytes = new Uint8Array(width)
  for (let i = 0; i < width; i++) bytes[i] = Number((BigInt(value) >> BigInt(8 * i)) & 0xffn)
  return bytes
}

export interface GuestSetup {
  kvm: Backend
  vm: Vm
  vcpu: Vcpu
  /** The host memory of slot 10 at GPA (absent with `slotPages: 0`). */
  mem: HostMapping
}

/**
 * A VM (default type on `profile`, upstream-6.18 unless given) with slot 10 at GPA over `slotPages`
 * pages of anonymous memory with `flags`, and vCPU 0 running `steps`.
 */
export async function guest(
  steps: GuestStep[],
  opts: { profile?: string; type?: number; slotPages?: number; flags?: number } = {},
): Promise<GuestSetup> {
  const kvm = createEmulatorBackend({ profile: opts.profile })
  const vm = await kvm.createVm({ type: opts.type ?? 0 })
  const pages = opts.slotPages ?? 2
  const mem = await kvm.mmap({ size: Math.max(pages, 1) * PAGE, backing: 'anonymous' })
  if (pages > 0) {
    await vm.setUserMemoryRegion({ slot: 10, flags: opts.flags ?? 0, guestPhysAddr: GPA, memorySize: pages * PAGE, userspaceAddr: mem.addr })
  }
  const vcpu = await vm.createVcpu(0)
  await vcpu.loadProgram({ steps })
  return { kvm, vm, vcpu, mem }
}

/** KVM_RUN with a 5 s deadline. */
export function run(vcpu: Vcpu, opts: RunOptions = {}): Promise<VcpuExit> {
  return vcpu.run({ timeoutMs: 5000, ...opts })
}

/** The 32-bit value an io exit carries (a `signal` step's). */
export function signalValue(exit: VcpuExit): number {
  if (exit.kind !== 'io') return expect.fail(`expected an io exit, got ${exit.kind}`)
  return new DataView(exit.data.buffer, exit.data.byteOffset, exit.data.byteLength).getUint32(0, true)
}

/** Runs until the next `signal` and returns its value (any other exit fails the spec). */
export async function nextSignal(vcpu: Vcpu, opts: RunOptions = {}): Promise<number> {
  return signalValue(await run(vcpu, opts))
}

export { setTimeout as sleep } from 'node:timers/promises'

/** A VM with slot 10 at GPA made through KVM_SET_USER_MEMORY_REGION2, for the stage-2 and userfault specs. */
export interface SlotVm {
  kvm: Backend
  vm: Vm
  /** The slot's host memory. */
  mem: HostMapping
  /** The slot's userfault bitmap (every bit clear at first). */
  bitmap: UserfaultBitmap
  /** KVM_SET_USER_MEMORY_REGION2 of slot 10 with `flags`, `gpa` (GPA by default) and the slot's bitmap unless given. */
  set(flags: number, o?: { gpa?: number | bigint; userfaultBitmap?: bigint; guestMemfd?: number }): Promise<void>
  /** The gfn of page `n` of the slot at GPA. */
  gfn(n: number): number
}

/**
 * A VM (`profile`, userfault-v3 unless given; `type`) with `pages` pages of `backing` memory (anonymous_thp
 * by default: 2 MiB aligned, so huge mappings are possible) and slot 10 over them with `flags` (unless
 * `create: false`: the spec makes it with set()).
 */
export async function slotVm(
  o: { profile?: string; type?: number; pages?: number; backing?: Backing; flags?: number; create?: boolean } = {},
): Promise<SlotVm> {
  const kvm = createEmulatorBackend({ profile: o.profile ?? 'userfault-v3' })
  const vm = await kvm.createVm({ type: o.type ?? 0 })
  const pages = o.pages ?? 1024
  const mem = await kvm.mmap({ size: pages * PAGE, backing: o.backing ?? 'anonymous_thp' })
  const bitmap = await kvm.createUserfaultBitmap(pages)
  const set: SlotVm['set'] = (flags, s = {}) =>
    vm.setUserMemoryRegion2({
      slot: 10, flags, guestPhysAddr: s.gpa ?? GPA, memorySize: pages * PAGE, userspaceAddr: mem.addr,
      userfaultBitmap: s.userfaultBitmap ?? bitmap.addr, guestMemfd: s.guestMemfd ?? 0,
    })
  if (o.create !== false) await set(o.flags ?? 0)
  return { kvm, vm, mem, bitmap, set, gfn: (n) => GPA / PAGE + n }
}

/** Runs `steps` on a fresh vCPU 0 of `vm` to their first exit. */
export async function runSteps(vm: Vm, steps: GuestStep[]): Promise<{ vcpu: Vcpu; exit: VcpuExit }> {
  const vcpu = await vm.createVcpu(0)
  await vcpu.loadProgram({ steps })
  return { vcpu, exit: await run(vcpu) }
}
