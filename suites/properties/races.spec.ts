// The race properties find race bugs: each planted bug of fixtures/emulator-bugs/race-bugs.ts is caught
// within a fixed budget of runs from a fixed seed, with the violation it plants, and the correct
// emulator passes the same runs.

import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import type { Backend } from '../../harness/backend.ts'
import { loadBackend } from '../../backends/index.ts'
import { withBug } from '../../fixtures/emulator-bugs/index.ts'
import { RACE_BUGS } from '../../fixtures/emulator-bugs/race-bugs.ts'
import { raceProperty } from './races.ts'

const SEED = 1
const BUDGET = 300

async function emulator(): Promise<Backend> {
  const load = await loadBackend('emulator')
  if (!load.available) throw new Error(load.reason)
  return load.backend
}

describe('the race properties catch planted race bugs', () => {
  for (const kvmUserfault of [false, true]) {
    test(`the correct emulator passes (${kvmUserfault ? 'KVM Userfault and ' : ''}userfaultfd)`, async () => {
      const kvm = await emulator()
      try {
        const r = await fc.check(raceProperty(kvm, kvmUserfault), { seed: SEED, numRuns: BUDGET })
        expect(r.failed, fc.defaultReportMessage(r)).toBe(false)
      } finally {
        await kvm.close()
      }
    }, 120_000)
  }

  for (const [name, bug] of Object.entries(RACE_BUGS)) {
    test(`${name}: ${bug.description}`, async () => {
      const kvm = withBug(await emulator(), name, bug)
      try {
        // endOnFailure: caught is what this asserts; shrinking a lost wake-up costs a grace period a step.
        const r = await fc.check(raceProperty(kvm, bug.kvmUserfault), { seed: SEED, numRuns: BUDGET, endOnFailure: true })
        expect(r.failed, `${name} not caught in ${BUDGET} runs (seed ${SEED})`).toBe(true)
        expect(String(r.errorInstance)).toMatch(bug.caughtBy)
      } finally {
        await kvm.close()
      }
    }, 120_000)
  }
})
