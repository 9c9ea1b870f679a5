// The differential check: the same generated sequences of memslot and guest_memfd calls go through
// the emulator (profile `pvm-6.18`, this host's capabilities with upstream semantics) and the native
// backend (the real kernel), and every call must end the same way: success, the same value, or the same
// errno. A difference is either a bug in the emulator, a bug in the kernel, or a host deviation that
// deviations.ts names with its reason.

import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import { supportedVmTypes } from '../../harness/gating.ts'
import { loadBackend } from '../index.ts'
import { findDeviation } from './deviations.ts'
import { KVM_MEM_GUEST_MEMFD, KVM_MEM_LOG_DIRTY_PAGES } from '../../harness/uapi/kvm.ts'
import { describeOp, replay, sequenceArbitrary, type Op } from './ops.ts'

const native = await loadBackend('native')
const emulator = await loadBackend('emulator', { profile: 'pvm-6.18' })
const seed = process.env.KVMCONF_SEED === undefined ? undefined : Number(process.env.KVMCONF_SEED)

/**
 * The ops of a sequence whose outcomes differ without a documented deviation. A documented deviation
 * ends the comparison: the op succeeded on one backend and failed on the other, so their states differ
 * from there on and every later outcome may differ as a consequence, not as a new disagreement.
 */
function disagreements(ops: readonly Op[], emu: string[], nat: string[]): string[] {
  const lines: string[] = []
  for (const [i, op] of ops.entries()) {
    if (emu[i] === nat[i]) continue
    if (findDeviation(op, emu[i] ?? '', nat[i] ?? '')) break
    lines.push(`#${i} ${describeOp(op)}: emulator ${emu[i]}, kernel ${nat[i]}`)
  }
  return lines
}

describe('differential: emulator (pvm-6.18) vs native', () => {
  test('memslot and guest_memfd calls end the same way on both', async (ctx) => {
    if (!native.available) return ctx.skip(`the native backend is not available: ${native.reason}`)
    if (!emulator.available) return ctx.skip(`the emulator is not available: ${emulator.reason}`)
    const types = await supportedVmTypes(native.backend)
    await fc.assert(
      fc.asyncProperty(sequenceArbitrary(types), async (ops) => {
        const emu = await replay(emulator.backend, ops)
        const nat = await replay(native.backend, ops)
        const diff = disagreements(ops, emu, nat)
        expect(diff, `the emulator and the kernel disagree:\n${diff.join('\n')}`).toEqual([])
      }),
      { numRuns: 300, seed, endOnFailure: false },
    )
  })

  // Sequences the generator found rarely (2 in 40,000) and that exposed a missing emulator rule: every
  // change to a guest_memfd slot is EINVAL, also one that drops KVM_MEM_GUEST_MEMFD from its flags
  // (memslots.ts). Replayed every time, so the rule stays pinned to the kernel.
  const slot1 = (flags: number, gpa: bigint): Op => ({
    op: 'setRegion', v2: true, vm: 0, slot: 1, flags, gpa, size: 0x200000n,
    hva: { hva: 'mapping', index: 1, offset: 0x200000n }, gmem: { fd: 'gmem', index: 0 }, gmemOffset: 0n,
  })
  const found = [0, KVM_MEM_LOG_DIRTY_PAGES].flatMap((flags) => [0n, 0x200000n].flatMap((gpa) => [false, true].map((release) => ({
    name: `a guest_memfd slot changed to flags ${flags} at gpa 0x${gpa.toString(16)}${release ? ', its file released' : ''}`,
    ops: [
      { op: 'createVm', type: 0 },
      { op: 'createGmem', vm: 0, size: 0x400000n, flags: 0n },
      slot1(KVM_MEM_GUEST_MEMFD, 0n),
      ...(release ? [{ op: 'closeGmem', gmem: 0 } as const] : []),
      slot1(flags, gpa),
    ] satisfies Op[],
  }))))
  test.for(found)('$name: EINVAL on both', async ({ ops }, ctx) => {
    if (!native.available) return ctx.skip(`the native backend is not available: ${native.reason}`)
    if (!emulator.available) return ctx.skip(`the emulator is not available: ${emulator.reason}`)
    const emu = await replay(emulator.backend, ops)
    const nat = await replay(native.backend, ops)
    expect(disagreements(ops, emu, nat)).toEqual([])
    expect(nat.at(-1)).toBe('EINVAL')
  })
})
