// Outcomes: what a failure was (operation, expected and actual errno or exit, seed), read from the error.
//
// Two sources, one function. Errors the backends throw carry their facts as fields (KvmError: `code`,
// `op`; HostFault: `code` = the signal; VcpuTimeout) and vitest keeps an error's own fields when it
// sends it from the worker to the reporter, so `failureOf` reads those first. Assertions made with
// harness/expect-errno.ts are plain AssertionErrors whose message has a fixed shape,
//   "<what>: expected EINVAL, got EEXIST from KVM_SET_USER_MEMORY_REGION2"
//   "<what>: expected EINVAL, but it succeeded"      "<what>: expected success, got EEXIST from OP"
// and vCPU checks say "expected internal_error, got shutdown ..." (describeExit() words); those are
// parsed. expect-errno.spec-like pins live in outcome.spec.ts, against the real expectErrno, so a change
// of wording there fails here. fast-check's "{ seed: N, path: "..." }" gives the replay data.
//
// The same function runs inside the worker (harness/test.ts, to judge an in-test expected failure) and
// in the reporter (on the serialised error), so both judge a failure by the same facts.

import type { Failure, KernelLog, TestStatus } from '../results.ts'
import type { Expectation } from '../expectations.ts'

/** What kvmconf attaches to a vitest task (`task.meta.kvmconf`), read back by the collect reporter. */
export interface KvmconfTaskMeta {
  /** The test failed as this entry expects; harness/test.ts turned it into a skip that says so. */
  xfail?: { expectation: Expectation; failure: Failure; status: 'FAIL' | 'TIMEOUT' }
  /** The test passed where this entry expects a failure; harness/test.ts failed it. */
  xpass?: { expectation: Expectation }
  /** The kernel log between the test's markers (kvmconf run --kmsg). */
  kernelLog?: KernelLog
}

declare module 'vitest' {
  interface TaskMeta {
    kvmconf?: KvmconfTaskMeta
  }
}

/** An error as the reporter sees it: a live Error in the worker, or vitest's serialised copy. */
export interface ErrorLike {
  name?: unknown
  message?: unknown
  code?: unknown
  op?: unknown
  timeoutMs?: unknown
}

const ERRNO = /^E[A-Z0-9]+$/
// "<what>: expected A, got B from OP" / "expected A, got B" (B may be several words: describeExit())
const EXPECTED_GOT = /expected (.+?), got (.+?)(?: from ([A-Z][A-Z0-9_]*))?$/m
// "<what>: expected A, but it succeeded" (expectErrno) / "expected SIGBUS, but the access completed"
const EXPECTED_BUT = /expected (\S+?), but (it succeeded|the access completed)/m
const SEED = /seed: (-?\d+), path: "([^"]*)"/
const VITEST_TIMEOUT = /^(Test|Hook) timed out in \d+ms/

/** The errno or exit a failure produced, keyed the way expectation entries name it. */
function actualOf(actual: string): Pick<Failure, 'errno' | 'exit'> {
  if (actual === 'success' || actual === 'it succeeded') return { errno: 'success' }
  const word = actual.split(/[\s(:,]/)[0] ?? actual
  if (ERRNO.test(word)) return { errno: word }
  return { exit: word }
}

/** The facts of a failure from its error (see the file comment for the shapes read). */
export function failureOf(error: ErrorLike | undefined): Failure {
  const message = typeof error?.message === 'string' && error.message !== '' ? error.message : 'failed without an error message'
  const failure: Failure = { message }
  const name = error?.name
  if ((name === 'KvmError' || name === 'HostFault') && typeof error?.code === 'string') {
    failure.op = typeof error.op === 'string' ? error.op : undefined
    if (name === 'KvmError') failure.errno = error.code
    else failure.exit = error.code
  } else if (name === 'VcpuTimeout') {
    failure.exit = 'timeout'
  } else {
    const got = EXPECTED_GOT.exec(message)
    const but = got === null ? EXPECTED_BUT.exec(message) : null
    if (got !== null) {
      failure.expected = got[1]
      if (got[3] !== undefined) failure.op = got[3]
      Object.assign(failure, actualOf(got[2] ?? ''))
    } else if (but !== null) {
      failure.expected = but[1]
      if (but[2] === 'it succeeded') failure.errno = 'success'
      else failure.exit = 'completed'
    }
  }
  const seed = SEED.exec(message)
  if (seed !== null) {
    failure.seed = Number(seed[1])
    failure.path = seed[2]
  }
  for (const k of Object.keys(failure) as (keyof Failure)[]) if (failure[k] === undefined) delete failure[k]
  return failure
}

/** TIMEOUT for a missed deadline (vitest's test timeout, a kicked vCPU), FAIL for anything else. */
export function failedStatusOf(error: ErrorLike | undefined): 'FAIL' | 'TIMEOUT' {
  if (error?.name === 'VcpuTimeout') return 'TIMEOUT'
  if (typeof error?.message === 'string' && VITEST_TIMEOUT.test(error.message)) return 'TIMEOUT'
  return 'FAIL'
}

/** The first line of a message: what a record's `reason` and a one-line report show. */
export function firstLine(message: string): string {
  return message.split('\n')[0] ?? message
}

/** The observed outcome of a failing test, as expectations judge it. */
export interface Observed {
  status: TestStatus
  failure?: Failure
  /** Kernel warning lines, which a WARN entry's `failure` pattern is matched against. */
  kernelWarnings?: string[]
}

export function observeError(error: ErrorLike | undefined): Observed & { status: 'FAIL' | 'TIMEOUT'; failure: Failure } {
  return { status: failedStatusOf(error), failure: failureOf(error) }
}
