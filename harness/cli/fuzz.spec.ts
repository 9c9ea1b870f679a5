// The fuzzer finds bugs: for each emulator variant with one deliberate bug (fixtures/emulator-bugs), a
// fuzzing session with a fixed seed and a fixed budget of runs fails, and its shrunk command sequence
// names the call that shows the bug. The correct emulator passes the same kind of session.

import { describe, expect, test } from 'vitest'
import { loadBackend } from '../../backends/index.ts'
import { EMULATOR_BUGS, withBug } from '../../fixtures/emulator-bugs/index.ts'
import { runFuzz } from '../../suites/fuzz/run.ts'
import { parseDuration } from './fuzz.ts'

/**
 * Runs per bug at most; every bug below is caught within it with its seed. The stage-2 bugs need up to a
 * few thousand runs since command set v2 added the host and userfaultfd commands (with seed 1 and the
 * emulator's userfaultfd: no-zap-on-enable 1983, mapped-page-exits 607; seed 2 needs 5331 for the former).
 */
const BUDGET = 10_000
const SEED = 1

/** Each planted bug and a pattern the failing call of its shrunk sequence matches. */
const CAUGHT_BY: Record<string, RegExp> = {
  'overlap-einval': /predicts EEXIST, the backend gave EINVAL/,
  'legacy-userfault': /^KVM_SET_USER_MEMORY_REGION\(.*USERFAULT.*predicts EINVAL, the backend gave ok/,
  // Pre-faulting reads the bitmap too (suites/fuzz/commands/pre-fault.ts), so it may be the one to notice.
  'bitmap-off-by-one': /guest (read|write) .*predicts a userfault exit|KVM_PRE_FAULT_MEMORY.*predicts (EFAULT|ok)/,
  'private-on-shared': /predicts a userfault exit .*flags 0x18/,
  'no-zap-on-enable': /guest (read|write) .*predicts a userfault exit/,
  'mapped-page-exits': /guest read .*predicts no exit before GUEST_SYNC, the backend gave memory_fault/,
}

async function emulator() {
  const load = await loadBackend('emulator')
  if (!load.available) throw new Error(load.reason)
  return load.backend
}

describe('kvmconf fuzz finds planted emulator bugs', () => {
  test('every planted bug has a pattern here', () => {
    expect(Object.keys(CAUGHT_BY).sort()).toEqual(Object.keys(EMULATOR_BUGS).sort())
  })

  test('the correct emulator passes', async () => {
    const kvm = await emulator()
    try {
      const r = await runFuzz(kvm, { seed: SEED, numRuns: 300 })
      expect(r.failure, r.failure?.error).toBeNull()
      expect(r.commands).toBeGreaterThan(300)
    } finally {
      await kvm.close()
    }
  })

  for (const [name, bug] of Object.entries(EMULATOR_BUGS)) {
    test(`${name}: ${bug.description}`, async () => {
      const kvm = withBug(await emulator(), name, bug)
      try {
        const r = await runFuzz(kvm, { seed: SEED, numRuns: BUDGET })
        expect(r.failure, `${name} not caught in ${BUDGET} runs (seed ${SEED})`).not.toBeNull()
        expect(r.failure!.error).toMatch(CAUGHT_BY[name]!)
        expect(r.failure!.commands.length, 'the shrunk sequence').toBeGreaterThan(0)
        // The failure replays from its seed, path and replayPath alone.
        const again = await runFuzz(kvm, { seed: SEED, path: r.failure!.path, replayPath: r.failure!.replayPath })
        expect(again.failure?.error, 'the replay').toBe(r.failure!.error)
      } finally {
        await kvm.close()
      }
    })
  }

  test('--time durations', () => {
    expect([parseDuration('60s'), parseDuration('2m'), parseDuration('500ms'), parseDuration('3')]).toEqual([60_000, 120_000, 500, 3000])
    expect(() => parseDuration('soon')).toThrow(/--time soon/)
  })
})
