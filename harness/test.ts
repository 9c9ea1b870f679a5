// The `test` every conformance suite uses: vitest's test with a `kvm` fixture and expectations.
//
// `kvm` is the backend under test seen through a scope (harness/scope.ts), so everything a test
// creates is closed after it. When the backend is not available in this run (no /dev/kvm, addon not
// built, agent not reachable) every test skips with that reason: a missing backend is never a pass.
// A failure that fixtures/expectations/<backend>.json (or `kvmconf run --expectations FILE`) expects,
// the same way (harness/expectations.ts), is reported as a skip saying "expected failure" with the
// entry's reason, and `task.meta.kvmconf.xfail` tells `kvmconf run` it is an XFAIL; a pass it did not
// expect fails (XPASS).

import { test as base, type TestContext } from 'vitest'
import type { Backend } from './backend.ts'
import { backendName, backendUnderTest } from './context.ts'
import { expectationFor, judgedBackend, loadExpectations, matches, xfailReason, xpassReason, type Expectation, type RunFacts } from './expectations.ts'
import { observeError } from './reporters/outcome.ts'
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
  const info = await kvm.info()
  const backend = judgedAs(info.profile)
  expectations ??= loadExpectations(backend)
  if (expectations.length === 0) return undefined
  const run: RunFacts = { backend, kernel: info.kernelRelease, profile: info.profile, arch: info.arch }
  return expectationFor(expectations, run, name)
}

/**
 * Whose expectations a run is judged by: the backend's own, except that the remote backend is judged as
 * the backend its agent hosts, because that kernel (or profile) is what answers. The handshake's info()
 * says which: a real kernel has no profile (native), the emulator always has one.
 */
function judgedAs(profile: string | null): string {
  return judgedBackend(backendName(), profile)
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
        // The same matching function `kvmconf run` applies to collected records (harness/expectations.ts).
        // A skip (vitest's PendingError) is not a failure.
        if (expected === undefined || (e as { code?: unknown } | null)?.code === 'VITEST_PENDING') throw e
        const observed = observeError(typeof e === 'object' && e !== null ? e : { message: String(e) })
        if (!matches(expected, observed)) throw e
        task.meta.kvmconf = { ...task.meta.kvmconf, xfail: { expectation: expected, ...observed } }
        return skip(xfailReason(backendName(), expected, observed.failure.message))
      }
      // A WARN entry is about the kernel log, which only `kvmconf run --kmsg` reads after the test.
      if (expected !== undefined && expected.status !== 'WARN') {
        task.meta.kvmconf = { ...task.meta.kvmconf, xpass: { expectation: expected } }
        throw new Error(xpassReason(expected))
      }
    },
    timeout,
  )
}

export { describe, expect } from 'vitest'
