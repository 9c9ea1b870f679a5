// A call's outcome as the fuzzer compares it: 'ok' or the errno's name.

import { KvmError } from '../../harness/errors.ts'

export type CallOutcome = 'ok' | string

export function outcomeOf(call: Promise<unknown>): Promise<CallOutcome> {
  return call.then(() => 'ok', (e: unknown) => {
    if (KvmError.is(e)) return e.code
    throw e
  })
}

/** Fails with the call, what the model predicted and what the backend did. */
export function expectOutcome(got: CallOutcome, want: CallOutcome, call: string): void {
  if (got !== want) throw new Error(`${call}: the model predicts ${want}, the backend gave ${got}`)
}

/** As expectOutcome, where a rule lets the kernel choose among `wants`. */
export function expectOneOf(got: CallOutcome, wants: readonly CallOutcome[], call: string): void {
  if (!wants.includes(got)) throw new Error(`${call}: the model predicts ${wants.join(' or ')}, the backend gave ${got}`)
}
