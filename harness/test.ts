// The `test` every conformance suite uses: vitest's test with a `kvm` fixture and expectations.
//
// `kvm` is the backend under test seen through a scope (harness/scope.ts), so everything a test
// creates is closed after it. When the backend is not available in this run (no /dev/kvm, addon not
// built, agent not reachable) every test skips with that reason: a missing backend is never a pass.
// A failure that fixtures/expectations/<backend>.json expects (harness/expectations.ts) is reported
// as a skip saying "expected failure" with the entry's reason; a pass it did not expect fails.

import { test as base, type TestContext } from 'vitest'
import type { Backend } from './backend.ts'
import { backendName, backendUnderTest } from './context.ts'
import { expectationFor, failsAsExpected, loadExpectations, type Expectation, type RunFacts } from './expectations.ts'
import { scoped } from './scope.ts'

export interface KvmFixtures {
  kvm: Backend
}

/** What a conformance test gets: the backend and the parts of vitest's context tests use. */
export type KvmTestContext = KvmFixtures &
  Pick<TestContext, 'skip' | 'task' | 'signal' | 'annotate' | 'expect' | 'onTestFinished' | 'onTestFailed'>

const withKvm = base.extend<KvmFixtures>({
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

let expectations: Expectation[] | undefined

async function expectationForTest(kvm: Backend, name: string): Promise<Expectation | undefined> {
  expectations ??= loadExpectations(backendName())
  if (expectations.length === 0) return undefined
  const info = await kvm.info()
  const run: RunFacts = { backend: backendName(), kernel: info.kernelRelease, profile: info.profile, arch: info.arch }
  return expectationFor(expectations, run, name)
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}

/** A conformance test: `fn` gets vitest's context plus `kvm`. */
export function test(name: string, fn: (ctx: KvmTestContext) => Promise<void>, timeout?: number): void {
  withKvm(
    name,
    // vitest reads the fixtures a test uses from this destructuring pattern: keep it literal.
    async ({ kvm, skip, task, signal, annotate, expect, onTestFinished, onTestFailed }) => {
      const ctx: KvmTestContext = { kvm, skip, task, signal, annotate, expect, onTestFinished, onTestFailed }
      const expected = await expectationForTest(kvm, task.fullTestName ?? task.name)
      try {
        await fn(ctx)
      } catch (e) {
        if (expected === undefined || !failsAsExpected(expected, messageOf(e))) throw e
        return skip(`expected failure on this ${backendName()} backend (${expected.reason}): ${messageOf(e).split('\n')[0]}`)
      }
      if (expected !== undefined) {
        throw new Error(
          `unexpected pass: fixtures/expectations/${backendName()}.json expects this test to fail (${expected.reason}); remove the entry if the kernel is fixed`,
        )
      }
    },
    timeout,
  )
}

export { describe, expect } from 'vitest'
