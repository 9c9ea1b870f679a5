// The race properties of races.ts on the backend under test: fast-check's scheduler picks the order of
// the vCPUs' runs, the userfaultfd resolutions, the background fetches, the bit clears and the
// KVM_MEM_USERFAULT toggles. A failure prints the order (the scheduler's task list) and the plan.

import fc from 'fast-check'
import { requires } from '../../harness/gating.ts'
import { describe, test } from '../../harness/test.ts'
import { raceProperty } from './races.ts'

const RUNS = 40

describe('properties: races of demand paging', () => {
  test('userfaultfd: no vCPU is left waiting on a resolved page, whatever the order', async ({ kvm, skip }) => {
    await requires({ kvm, skip }, { feature: 'vcpu' }, { feature: 'userfaultfd' })
    await fc.assert(raceProperty(kvm, false), { numRuns: RUNS })
  }, 300_000)

  test('KVM Userfault with userfaultfd: no stale exit, no vCPU left waiting, whatever the order', async ({ kvm, skip }) => {
    await requires({ kvm, skip }, { feature: 'vcpu' }, { feature: 'userfaultfd' }, { userfault: true })
    await fc.assert(raceProperty(kvm, true), { numRuns: RUNS })
  }, 300_000)
})
