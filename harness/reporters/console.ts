// The console summary of `kvmconf run`: per suite, how many tests had each status, every skip's reason
// (grouped, since one missing capability skips many tests), every expected failure with the entry's
// reason, every kernel warning, and every result that is not as expected with its details.

import { countBySuite, countStatuses, fullId, summaryLine, type RunResult, type TestRecord, type TestStatus } from '../results.ts'
import { describeFailure, describeRun } from './details.ts'

const COLUMNS: [TestStatus, string][] = [
  ['PASS', 'passed'],
  ['FAIL', 'failed'],
  ['SKIP', 'skipped'],
  ['XFAIL', 'xfail'],
  ['XPASS', 'xpass'],
  ['WARN', 'warn'],
  ['TIMEOUT', 'timeout'],
  ['CRASH', 'crash'],
]

function grouped(records: readonly TestRecord[], key: (r: TestRecord) => string): Map<string, string[]> {
  const groups = new Map<string, string[]>()
  for (const r of records) groups.set(key(r), [...(groups.get(key(r)) ?? []), r.id])
  return groups
}

export function renderConsole(result: RunResult): string {
  const { results } = result
  const out: string[] = [describeRun(result), '']

  const counts = countBySuite(results)
  const total = countStatuses(results)
  // passed, failed and skipped always; the other statuses when the run has them.
  const columns = COLUMNS.filter(([s], i) => i < 3 || total[s] > 0)
  const width = Math.max(5, ...[...counts.keys()].map((s) => s.length))
  out.push(`${'suite'.padEnd(width)}${columns.map(([, h]) => `  ${h.padStart(6)}`).join('')}`)
  for (const [suite, c] of counts) {
    out.push(`${suite.padEnd(width)}${columns.map(([s, h]) => `  ${String(c[s]).padStart(Math.max(6, h.length))}`).join('')}`)
  }

  const section = (title: string, groups: Map<string, string[]>) => {
    if (groups.size === 0) return
    out.push('', title)
    for (const [reason, ids] of groups) {
      out.push(`  ${reason}`)
      for (const id of ids) out.push(`    - ${id}`)
    }
  }
  section('Skipped:', grouped(results.filter((r) => r.status === 'SKIP'), (r) => `${r.suite}: ${r.reason ?? ''}`))
  section('Expected failures:', grouped(results.filter((r) => r.status === 'XFAIL'), (r) => `${r.suite}: ${r.reason ?? ''}`))

  const warned = results.filter((r) => r.status === 'WARN')
  if (warned.length > 0) {
    out.push('', 'Kernel warnings:')
    for (const r of warned) {
      out.push(`  ${fullId(r)}`, `    ${r.reason}`)
      for (const line of r.kernelLog.warnings.slice(0, 5)) out.push(`    | ${line}`)
    }
  }

  const failures = results.filter((r) => r.status === 'FAIL' || r.status === 'TIMEOUT' || r.status === 'CRASH' || r.status === 'XPASS')
  if (failures.length > 0) {
    out.push('', 'Not as expected:')
    for (const f of failures) {
      out.push(`  ${f.status} ${fullId(f)}`)
      for (const line of describeFailure(f)) out.push(`    ${line}`)
    }
  }
  for (const e of result.errors ?? []) out.push('', `Run error: ${e}`)

  out.push('', summaryLine(total))
  return out.join('\n') + '\n'
}

export class ConsoleReporter {
  static readonly description = 'a summary for people: counts per suite, skip reasons, failures with details'
  render(result: RunResult): string {
    return renderConsole(result)
  }
}
