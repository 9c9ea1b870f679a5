// The console summary of `kvmconf run`: per suite, how many passed, failed and skipped, every skip's
// reason (grouped, since one missing capability skips many tests) and every failure with its message.

import { countBySuite, type RunResult } from '../results.ts'

export function renderConsole({ runInfo, results }: RunResult): string {
  const out: string[] = []
  const profile = runInfo.profile ? `, profile ${runInfo.profile}` : ''
  out.push(`kvmconf ${runInfo.kvmconfVersion} on ${runInfo.backend}${profile}: kernel ${runInfo.kernel} (${runInfo.arch}) on ${runInfo.host}`)
  out.push('')

  const counts = countBySuite(results)
  const width = Math.max(5, ...[...counts.keys()].map((s) => s.length))
  out.push(`${'suite'.padEnd(width)}  passed  failed  skipped`)
  for (const [suite, c] of counts) {
    out.push(`${suite.padEnd(width)}  ${String(c.passed).padStart(6)}  ${String(c.failed).padStart(6)}  ${String(c.skipped).padStart(7)}`)
  }

  const skips = new Map<string, string[]>()
  for (const r of results) {
    if (r.status !== 'SKIP') continue
    const key = `${r.suite}: ${r.reason ?? ''}`
    skips.set(key, [...(skips.get(key) ?? []), r.id])
  }
  if (skips.size > 0) {
    out.push('', 'Skipped:')
    for (const [reason, ids] of skips) {
      out.push(`  ${reason}`)
      for (const id of ids) out.push(`    - ${id}`)
    }
  }

  const failures = results.filter((r) => r.status === 'FAIL')
  if (failures.length > 0) {
    out.push('', 'Failed:')
    for (const f of failures) out.push(`  ${f.suite} > ${f.id}`, `    ${f.reason ?? ''}`)
  }

  const total = { passed: 0, failed: 0, skipped: 0 }
  for (const c of counts.values()) {
    total.passed += c.passed
    total.failed += c.failed
    total.skipped += c.skipped
  }
  out.push('', `${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped`)
  return out.join('\n') + '\n'
}
