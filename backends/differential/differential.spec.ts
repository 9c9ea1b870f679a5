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
})
