// The `test` every conformance suite uses: vitest's test with a `kvm` fixture.
//
// `kvm` is the backend under test seen through a scope (harness/scope.ts), so everything a test
// creates is closed after it. When the backend is not available in this run (no /dev/kvm, addon not
// built, agent not reachable) every test skips with that reason: a missing backend is never a pass.

import { test as base } from 'vitest'
import type { Backend } from './backend.ts'
import { backendName, backendUnderTest } from './context.ts'
import { scoped } from './scope.ts'

export interface KvmFixtures {
  kvm: Backend
}

export const test = base.extend<KvmFixtures>({
  kvm: async ({ skip }, use) => {
    const load = await backendUnderTest()
    if (!load.available) return skip(`the ${backendName()} backend is not available: ${load.reason}`)
    const scope = scoped(load.backend)
    try {
      await use(scope.kvm)
    } finally {
      await scope.release()
    }
  },
})

export { describe, expect } from 'vitest'
