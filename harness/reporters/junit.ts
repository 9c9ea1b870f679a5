// JUnit XML, the shape Jenkins, GitLab and GitHub's test-report actions read (Ant/Surefire's): one
// <testsuite> per kvmconf suite with the runInfo as properties, one <testcase> per test.

import { countStatuses, groupBySuite, type RunResult, type TestRecord } from '../results.ts'
import { describeFailure } from './details.ts'

// XML 1.0 Char: anything else (most C0 controls, lone surrogates) cannot appear even escaped.
const NOT_XML_CHAR = /[^\x09\x0A\x0D\x20-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu

export function escapeXml(s: string): string {
  return s
    .replace(NOT_XML_CHAR, '\uFFFD')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;')
}

/** An attribute value: also keeps newlines and tabs, which a parser would otherwise normalise to spaces. */
export function escapeXmlAttr(s: string): string {
  return escapeXml(s).replace(/\n/g, '&#10;').replace(/\r/g, '&#13;').replace(/\t/g, '&#9;')
}

export function unescapeXml(s: string): string {
  return s.replace(/&(amp|lt|gt|quot|apos|#\d+);/g, (_, e: string) =>
    e.startsWith('#') ? String.fromCodePoint(Number(e.slice(1))) : (({ amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" }) as Record<string, string>)[e] ?? '',
  )
}

export interface JunitOutcome {
  element?: 'failure' | 'error' | 'skipped'
  type?: string
  message?: string
}

/**
 * The outcome-to-wire mapping. A wrong answer is a <failure>, a test that could not finish (timeout,
 * crash) an <error>; an expected failure is <skipped type="XFAIL">, as pytest writes xfail, and an
 * unexpected pass a <failure type="XPASS">, as pytest's strict xfail does. WARN passed: no element,
 * the kernel's lines go to <system-out>.
 */
export function junitOutcome(r: TestRecord): JunitOutcome {
  switch (r.status) {
    case 'PASS':
    case 'WARN':
      return {}
    case 'FAIL':
      return { element: 'failure', type: 'FAIL', message: r.reason }
    case 'XPASS':
      return { element: 'failure', type: 'XPASS', message: r.reason }
    case 'TIMEOUT':
    case 'CRASH':
      return { element: 'error', type: r.status, message: r.reason }
    case 'SKIP':
      return { element: 'skipped', message: r.reason }
    case 'XFAIL':
      return { element: 'skipped', type: 'XFAIL', message: r.reason }
  }
}

const seconds = (ms: number) => (ms / 1000).toFixed(3)

function testcase(r: TestRecord): string[] {
  const o = junitOutcome(r)
  const open = `    <testcase classname="${escapeXmlAttr(r.suite)}" name="${escapeXmlAttr(r.id)}" time="${seconds(r.durationMs)}"`
  const inner: string[] = []
  if (o.element !== undefined) {
    const attrs = `${o.type ? ` type="${escapeXmlAttr(o.type)}"` : ''} message="${escapeXmlAttr(o.message ?? '')}"`
    const body = o.element === 'skipped' ? [] : describeFailure(r)
    inner.push(body.length === 0 ? `      <${o.element}${attrs}/>` : `      <${o.element}${attrs}>${escapeXml(body.join('\n'))}</${o.element}>`)
  }
  const log = r.kernelLog?.lines ?? []
  if (r.status === 'WARN' || log.length > 0) {
    const text = [...(r.status === 'WARN' ? [r.reason] : []), ...log].join('\n')
    inner.push(`      <system-out>${escapeXml(text)}</system-out>`)
  }
  return inner.length === 0 ? [`${open}/>`] : [`${open}>`, ...inner, '    </testcase>']
}

function counts(records: readonly TestRecord[]) {
  const c = countStatuses(records)
  const time = records.reduce((t, r) => t + r.durationMs, 0)
  return `tests="${records.length}" failures="${c.FAIL + c.XPASS}" errors="${c.TIMEOUT + c.CRASH}" skipped="${c.SKIP + c.XFAIL}" time="${seconds(time)}"`
}

export function renderJunit(result: RunResult): string {
  const { runInfo } = result
  const props = Object.entries(runInfo)
    .filter(([, v]) => v !== undefined && v !== null)
    .map(([k, v]) => `      <property name="${escapeXmlAttr(k)}" value="${escapeXmlAttr(Array.isArray(v) ? v.join(' ') : String(v))}"/>`)
  const out = ['<?xml version="1.0" encoding="UTF-8"?>', `<testsuites name="kvmconf" ${counts(result.results)}>`]
  for (const [suite, records] of groupBySuite(result.results)) {
    out.push(`  <testsuite name="${escapeXmlAttr(suite)}" ${counts(records)} timestamp="${escapeXmlAttr(runInfo.startedAt)}" hostname="${escapeXmlAttr(runInfo.host)}">`)
    out.push('    <properties>', ...props, '    </properties>')
    for (const r of records) out.push(...testcase(r))
    out.push('  </testsuite>')
  }
  const errors = result.errors ?? []
  if (errors.length > 0) {
    out.push('  <testsuite name="(run)" tests="1" failures="0" errors="1" skipped="0" time="0.000">')
    out.push(`    <testcase classname="(run)" name="run errors" time="0.000">`)
    out.push(`      <error type="RUN" message="${escapeXmlAttr(errors[0] ?? '')}">${escapeXml(errors.join('\n'))}</error>`)
    out.push('    </testcase>', '  </testsuite>')
  }
  out.push('</testsuites>')
  return out.join('\n') + '\n'
}

export class JunitReporter {
  static readonly description = 'JUnit XML for CI test-report views (stdout, or =FILE)'
  render(result: RunResult): string {
    return renderJunit(result)
  }
}
