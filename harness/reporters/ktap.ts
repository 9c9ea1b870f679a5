// KTAP version 1 (Documentation/dev-tools/ktap.rst), shaped as kselftest prints a collection: one
// subtest block per suite, each test's diagnostic lines ("# ...") just before its result line, the
// block's own result after it, and kselftest's "# Totals:" line at the end.
//
// The description of a result line may not contain "#" (it starts the directive), so names and
// directive data are escaped (`\` → `\\`, `#` → `\#`, newline → `\n`); ktap-parser.ts undoes it and
// ktap.spec.ts checks the round trip as a property.

import { countStatuses, groupBySuite, type RunResult, type TestRecord } from '../results.ts'
import { describeFailure, describeRun } from './details.ts'

export function escapeKtap(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/#/g, '\\#').replace(/\n/g, '\\n').replace(/\r/g, '\\r')
}

export function unescapeKtap(s: string): string {
  return s.replace(/\\([\\#nr])/g, (_, c: string) => (c === 'n' ? '\n' : c === 'r' ? '\r' : c))
}

export interface KtapResult {
  ok: boolean
  directive?: 'SKIP' | 'XFAIL' | 'TIMEOUT' | 'ERROR' | 'XPASS' | 'WARN'
  data?: string
}

/**
 * The outcome-to-wire mapping. SKIP, XFAIL (kselftest's KSFT_XFAIL), TIMEOUT and ERROR are the
 * directives ktap.rst accepts; a crash is an ERROR. XPASS is "not ok" here because an unexpected pass
 * fails a kvmconf run, and WARN is "ok" (it passed) with the kernel's complaint as the data; a parser
 * that does not know those two directives falls back to ok / not ok, as the spec asks.
 */
export function ktapResult(r: TestRecord): KtapResult {
  switch (r.status) {
    case 'PASS':
      return { ok: true }
    case 'FAIL':
      return { ok: false }
    case 'SKIP':
      return { ok: true, directive: 'SKIP', data: r.reason }
    case 'XFAIL':
      return { ok: true, directive: 'XFAIL', data: r.reason }
    case 'TIMEOUT':
      return { ok: false, directive: 'TIMEOUT', data: r.reason }
    case 'CRASH':
      return { ok: false, directive: 'ERROR', data: r.reason }
    case 'XPASS':
      return { ok: false, directive: 'XPASS', data: r.reason }
    case 'WARN':
      return { ok: true, directive: 'WARN', data: r.reason }
  }
}

export function resultLine(n: number, description: string, res: KtapResult): string {
  const directive = res.directive === undefined ? '' : ` # ${res.directive}${res.data ? ` ${escapeKtap(res.data)}` : ''}`
  return `${res.ok ? 'ok' : 'not ok'} ${n} ${escapeKtap(description)}${directive}`
}

function diagnostics(r: TestRecord): string[] {
  if (r.status === 'PASS' || r.status === 'SKIP') return (r.kernelLog?.lines ?? []).slice(0, 50).map((l) => `kernel: ${l}`)
  const lines = r.status === 'FAIL' ? describeFailure(r) : describeFailure(r).slice(1) // the reason is the directive's data
  return lines.flatMap((l) => l.split('\n'))
}

/** A suite's block result: not ok when any test is, SKIP when every test skipped. */
function suiteResult(records: readonly TestRecord[]): KtapResult {
  if (records.some((r) => !ktapResult(r).ok)) return { ok: false }
  if (records.every((r) => r.status === 'SKIP')) return { ok: true, directive: 'SKIP', data: 'every test skipped' }
  return { ok: true }
}

export function renderKtap(result: RunResult): string {
  const out: string[] = ['KTAP version 1', `# ${describeRun(result)}`]
  const suites = groupBySuite(result.results)
  const errors = result.errors ?? []
  out.push(`1..${suites.size + (errors.length > 0 ? 1 : 0)}`)
  let n = 0
  for (const [suite, records] of suites) {
    out.push('  KTAP version 1', `  # Subtest: ${escapeKtap(suite)}`, `  1..${records.length}`)
    records.forEach((r, i) => {
      for (const d of diagnostics(r)) out.push(`  # ${d}`)
      out.push(`  ${resultLine(i + 1, r.id, ktapResult(r))}`)
    })
    out.push(resultLine(++n, suite, suiteResult(records)))
  }
  if (errors.length > 0) {
    for (const e of errors) out.push(...e.split('\n').map((l) => `# ${l}`))
    out.push(resultLine(++n, '(run errors)', { ok: false, directive: 'ERROR', data: errors[0] ?? '' }))
  }
  const c = countStatuses(result.results)
  out.push(`# Totals: pass:${c.PASS + c.WARN} fail:${c.FAIL} xfail:${c.XFAIL} xpass:${c.XPASS} skip:${c.SKIP} error:${c.TIMEOUT + c.CRASH}`)
  return out.join('\n') + '\n'
}

export class KtapReporter {
  static readonly description = 'KTAP version 1 as kselftest writes it (stdout, or =FILE)'
  render(result: RunResult): string {
    return renderKtap(result)
  }
}
