// Asserting a kernel call's errno with a message that says what was called and what came back.
//
// `await expect(p).rejects.toMatchObject({ code })` reports a mismatch as an object diff; a conformance
// failure should instead read like a kernel bug report: the call, its arguments, expected vs actual.

import { expect } from 'vitest'
import { KvmError } from './errors.ts'
import type { ErrnoName } from './uapi/errno.ts'

/** Awaits `call` and asserts it failed with `code`; `what` names the call and its arguments. */
export async function expectErrno(call: Promise<unknown>, code: ErrnoName, what: string): Promise<KvmError> {
  let result: unknown
  try {
    result = await call
  } catch (e) {
    if (!KvmError.is(e)) throw e
    if (e.code !== code) expect.fail(`${what}: expected ${code}, got ${e.code} from ${e.op}`)
    return e
  }
  return expect.fail(`${what}: expected ${code}, but it succeeded${describeResult(result)}`)
}

/** Awaits `call` and asserts it succeeded; a KvmError fails with the call's description. */
export async function expectOk<T>(call: Promise<T>, what: string): Promise<T> {
  try {
    return await call
  } catch (e) {
    if (KvmError.is(e)) expect.fail(`${what}: expected success, got ${e.code} from ${e.op}`)
    throw e
  }
}

function describeResult(result: unknown): string {
  if (result === undefined) return ''
  if (typeof result === 'object' && result !== null && 'fd' in result) return ` (fd ${String(result.fd)})`
  return ` (${String(result)})`
}
