// The details of a result that is not a plain pass, as lines of text: shared by the console, KTAP,
// JUnit and HTML reports so that each says the same thing about a failure.

import { describeExpected } from '../expectations.ts'
import type { Failure, RunResult, TestRecord } from '../results.ts'

/** `op KVM_SET_USER_MEMORY_REGION2: expected EEXIST, got EINVAL` and the replay data, when known. */
export function describeFacts(f: Failure): string[] {
  const lines: string[] = []
  const got = f.errno !== undefined ? `errno ${f.errno}` : f.exit !== undefined ? `exit ${f.exit}` : undefined
  const parts = [f.op && `op ${f.op}`, f.expected && `expected ${f.expected}`, got && `got ${got}`].filter(Boolean)
  if (parts.length > 0) lines.push(parts.join(', '))
  if (f.seed !== undefined) lines.push(`replay: fc.assert(..., { seed: ${f.seed}, path: "${f.path ?? ''}" })`)
  return lines
}

/** Every line worth showing about a record, its reason first. */
export function describeFailure(r: TestRecord, maxMessageLines = 12): string[] {
  const lines: string[] = [r.reason ?? '']
  if ('failure' in r && r.failure !== undefined) {
    const rest = r.failure.message.split('\n').slice(1).filter((l) => l.trim() !== '')
    lines.push(...rest.slice(0, maxMessageLines))
    if (rest.length > maxMessageLines) lines.push(`… ${rest.length - maxMessageLines} more lines`)
    lines.push(...describeFacts(r.failure))
  }
  if ('expectation' in r && r.expectation !== undefined && r.status !== 'XPASS') {
    lines.push(`expectation (${r.expectation.source ?? 'expectations file'}): ${describeExpected(r.expectation)}: ${r.expectation.reason}`)
  }
  if (r.kernelLog !== undefined && r.kernelLog.lines.length > 0) {
    lines.push(`kernel log (${r.kernelLog.lines.length} lines, tainted ${r.kernelLog.taintBefore} -> ${r.kernelLog.taintAfter}):`)
    lines.push(...r.kernelLog.lines.slice(0, 10).map((l) => `  ${l}`))
  }
  return lines
}

/** The header line every human-readable report starts with. */
export function describeRun({ runInfo }: RunResult): string {
  const profile = runInfo.profile ? `, profile ${runInfo.profile}` : ''
  const rev = runInfo.gitRevision ? ` (${runInfo.gitRevision.slice(0, 12)}${runInfo.gitRevision.endsWith('-dirty') ? '-dirty' : ''})` : ''
  const shard = runInfo.shard ? `, shard ${runInfo.shard}` : ''
  return `kvmconf ${runInfo.kvmconfVersion}${rev} on ${runInfo.backend}${profile}: kernel ${runInfo.kernel} (${runInfo.arch}) on ${runInfo.host}${shard}`
}
