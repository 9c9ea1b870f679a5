// Helpers for the emulator's vCPU specs: a VM with a test memslot, little-endian values, and running a
// vCPU to its next exit with a deadline so a stuck spec fails instead of hanging.

import { expect } from 'vitest'
import type { Backend, HostMapping, RunOptions, Vcpu, VcpuExit, Vm } from '../../harness/backend.ts'
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

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
