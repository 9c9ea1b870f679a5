// Expectations: where a backend or kernel is known to differ from upstream, written down with the reason.
//
// One file format and one matching function serve both places that judge a test against an entry:
// harness/test.ts, inside the worker (an expected failure becomes a skip that says so, a pass an entry
// did not expect fails), and `kvmconf run`, on the collected records (timeouts, crashes and kernel
// warnings, which the test itself cannot see). An entry names a test, the runs it applies to, how the
// test fails there and why:
//
//   { "test": "set_memory_region_test > test_mmio_during_vectoring",
//     "when": { "backend": "native", "kernel": "-fc-", "kernelVersion": ">=6.18 <6.19", "arch": "x86_64" },
//     "status": "FAIL", "exit": "shutdown", "reason": "PVM triple-faults ...", "link": "..." }
//
// `status` is FAIL, TIMEOUT, CRASH or WARN. A FAIL entry must say how it fails: `errno` (the errno the
// call produced, or `success`), `exit` (the vCPU exit or signal seen instead) and/or `failure` (a
// regular expression over the failure message). A failure counts as expected only if it fails that way
// (WebKit's test262 rule: a test that starts failing differently is a new failure); a test that passes
// where an entry expects it to fail is an unexpected pass (XPASS), so stale entries do not linger.

import { readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { ExpectationRef, Failure, RunInfo, RunResult, TestRecord } from './results.ts'
import { firstLine, type Observed } from './reporters/outcome.ts'

export const EXPECTED_STATUSES = ['FAIL', 'TIMEOUT', 'CRASH', 'WARN'] as const
export type ExpectedStatus = (typeof EXPECTED_STATUSES)[number]

export interface ExpectationCondition {
  backend?: string
  /** A regular expression over the kernel release (`uname -r`, or the emulator's name). */
  kernel?: string
  /** A range over the release's leading version: `>=6.18 <6.19` (comparators >=, >, <=, <, =). */
  kernelVersion?: string
  profile?: string
  arch?: string
}

export interface Expectation {
  /** The test's full name: `set_memory_region_test > test_mmio_during_vectoring`. */
  test: string
  when: ExpectationCondition
  status: ExpectedStatus
  /** The errno the failing call produced (`EINVAL`), or `success` when it succeeded. */
  errno?: string
  /** The vCPU exit (`shutdown`, `mmio`) or signal (`SIGBUS`) the test saw instead. */
  exit?: string
  /** A regular expression the failure's message (a WARN entry: the kernel's warning lines) must match. */
  failure?: string
  /** Why this backend or kernel differs; required. */
  reason: string
  /** Where the evidence is (a reference, a mailing-list message, a measurement). */
  link?: string
  /** The file the entry was read from (not part of the file format). */
  source?: string
}

export interface RunFacts {
  backend: string
  kernel: string
  profile: string | null
  arch: string
}

export const EXPECTATIONS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/expectations')

const ENTRY_KEYS = new Set(['test', 'when', 'status', 'errno', 'exit', 'failure', 'reason', 'link'])
const WHEN_KEYS = new Set(['backend', 'kernel', 'kernelVersion', 'profile', 'arch'])

export function parseExpectations(text: string, source: string): Expectation[] {
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch (e) {
    throw new Error(`${source}: not JSON (${(e as Error).message})`)
  }
  const entries = (data as { expectations?: unknown } | null)?.expectations
  if (!Array.isArray(entries)) throw new Error(`${source}: expected { "expectations": [...] }`)
  return entries.map((raw: unknown, i) => {
    const e = raw as Partial<Expectation> & Record<string, unknown>
    const where = `${source}: entry ${i}`
    if (typeof e !== 'object' || e === null) throw new Error(`${where} is not an object`)
    for (const key of Object.keys(e)) if (!ENTRY_KEYS.has(key)) throw new Error(`${where}: unknown field "${key}"`)
    for (const field of ['test', 'reason'] as const) {
      if (typeof e[field] !== 'string' || e[field] === '') throw new Error(`${where} needs a "${field}"`)
    }
    if (!(EXPECTED_STATUSES as readonly unknown[]).includes(e.status)) {
      throw new Error(`${where}: status must be one of ${EXPECTED_STATUSES.map((s) => `"${s}"`).join(', ')}`)
    }
    for (const field of ['errno', 'exit', 'failure', 'link'] as const) {
      if (e[field] !== undefined && (typeof e[field] !== 'string' || e[field] === '')) throw new Error(`${where}: "${field}" must be a string`)
    }
    if (e.status === 'FAIL' && e.errno === undefined && e.exit === undefined && e.failure === undefined) {
      throw new Error(`${where}: a FAIL entry must say how it fails ("errno", "exit" or "failure")`)
    }
    if (e.failure !== undefined) {
      try {
        new RegExp(e.failure)
      } catch (err) {
        throw new Error(`${where}: "failure" is not a regular expression (${(err as Error).message})`)
      }
    }
    const when = (e.when ?? {}) as ExpectationCondition & Record<string, unknown>
    for (const key of Object.keys(when)) if (!WHEN_KEYS.has(key)) throw new Error(`${where}: unknown condition "when.${key}"`)
    if (when.kernel !== undefined) new RegExp(when.kernel)
    if (when.kernelVersion !== undefined) parseRange(when.kernelVersion, where)
    return { ...(e as Expectation), when, source }
  })
}

export function readExpectationFile(file: string): Expectation[] {
  return parseExpectations(readFileSync(file, 'utf8'), file)
}

/** fixtures/expectations/<backend>.json: the entries every run on that backend is judged against. */
export function defaultExpectationFile(backend: string, dir = EXPECTATIONS_DIR): string {
  return path.join(dir, `${backend}.json`)
}

/**
 * The entries in force in this process: the files KVMCONF_EXPECTATIONS names (`kvmconf run
 * --expectations`, separated by the path delimiter) or else fixtures/expectations/<backend>.json
 * (none when it does not exist).
 */
export function loadExpectations(backend: string, dir = EXPECTATIONS_DIR, env = process.env.KVMCONF_EXPECTATIONS): Expectation[] {
  if (env !== undefined && env !== '') return env.split(path.delimiter).flatMap((f) => readExpectationFile(f))
  let text: string
  const file = defaultExpectationFile(backend, dir)
  try {
    text = readFileSync(file, 'utf8')
  } catch {
    return []
  }
  return parseExpectations(text, file)
}

// ---------------------------------------------------------------------------------------------------
// Kernel version ranges

/** The leading dotted version of a release: `6.18.44-fc-v657` → [6, 18, 44]; `emulator (upstream-6.18)` → [6, 18]. */
export function parseVersion(release: string): number[] | undefined {
  const m = /\d+(?:\.\d+)+/.exec(release)
  return m === null ? undefined : m[0].split('.').map(Number)
}

function compareVersions(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0)
    if (d !== 0) return Math.sign(d)
  }
  return 0
}

type Comparator = { op: '>=' | '>' | '<=' | '<' | '='; version: number[] }

function parseRange(range: string, where: string): Comparator[] {
  const parts = range.trim().split(/\s+/)
  return parts.map((p) => {
    const m = /^(>=|<=|>|<|=)?(\d+(?:\.\d+)*)$/.exec(p)
    if (m === null) throw new Error(`${where}: kernelVersion "${range}": "${p}" is not a comparator like >=6.18`)
    return { op: (m[1] ?? '=') as Comparator['op'], version: (m[2] ?? '').split('.').map(Number) }
  })
}

export function inVersionRange(range: string, release: string): boolean {
  const version = parseVersion(release)
  if (version === undefined) return false
  return parseRange(range, 'kernelVersion').every(({ op, version: v }) => {
    const c = compareVersions(version, v)
    return op === '>=' ? c >= 0 : op === '>' ? c > 0 : op === '<=' ? c <= 0 : op === '<' ? c < 0 : c === 0
  })
}

// ---------------------------------------------------------------------------------------------------
// Matching

export function applies(e: Expectation, run: RunFacts, test: string): boolean {
  const w = e.when
  return (
    e.test === test &&
    (w.backend === undefined || w.backend === run.backend) &&
    (w.kernel === undefined || new RegExp(w.kernel).test(run.kernel)) &&
    (w.kernelVersion === undefined || inVersionRange(w.kernelVersion, run.kernel)) &&
    (w.profile === undefined || w.profile === run.profile) &&
    (w.arch === undefined || w.arch === run.arch)
  )
}

/** The entry about `test` in this run, if any (the first one that applies). */
export function expectationFor(entries: readonly Expectation[], run: RunFacts, test: string): Expectation | undefined {
  return entries.find((e) => applies(e, run, test))
}

/** The one matching function: whether the observed outcome is the one `e` expects, the same way. */
export function matches(e: Expectation, o: Observed): boolean {
  if (e.status !== o.status) return false
  if (e.errno !== undefined && e.errno !== o.failure?.errno) return false
  if (e.exit !== undefined && e.exit !== o.failure?.exit) return false
  if (e.failure !== undefined) {
    const text = o.status === 'WARN' ? (o.kernelWarnings ?? []).join('\n') : (o.failure?.message ?? '')
    if (!new RegExp(e.failure).test(text)) return false
  }
  return true
}

/** How an entry says the test fails, in words: `FAIL with EBUSY`, `FAIL with exit shutdown`. */
export function describeExpected(e: Pick<Expectation, 'status' | 'errno' | 'exit' | 'failure'>): string {
  const how = [e.errno && `errno ${e.errno}`, e.exit && `exit ${e.exit}`, e.failure && `a message matching /${e.failure}/`].filter(Boolean)
  return how.length === 0 ? e.status : `${e.status} with ${how.join(' and ')}`
}

function describeObserved(o: Observed): string {
  const how = [o.failure?.errno && `errno ${o.failure.errno}`, o.failure?.exit && `exit ${o.failure.exit}`].filter(Boolean)
  return how.length === 0 ? o.status : `${o.status} with ${how.join(' and ')}`
}

export function refOf(e: Expectation): ExpectationRef {
  const { status, reason, errno, exit, failure, link, source } = e
  return JSON.parse(JSON.stringify({ status, reason, errno, exit, failure, link, source })) as ExpectationRef
}

/** The note of an expected failure; harness/test.ts has always started its skip note this way. */
export function xfailReason(backend: string, e: Pick<Expectation, 'reason'>, message: string): string {
  return `expected failure on this ${backend} backend (${e.reason}): ${firstLine(message)}`
}

export function xpassReason(e: Expectation): string {
  return `unexpected pass: ${e.source ?? 'an expectations file'} expects ${describeExpected(e)} (${e.reason}); remove the entry if the kernel is fixed`
}

/**
 * The run-level judgement of collected records. Records harness/test.ts already judged (XFAIL,
 * XPASS) stay; a failure, timeout, crash or kernel warning an entry expects becomes XFAIL; one of
 * another kind keeps its status and names the entry it missed; a pass an entry did not expect becomes
 * XPASS (for WARN entries only when the kernel log was checked). Skips say nothing either way.
 */
export function judgeRecords(
  records: readonly TestRecord[],
  entries: readonly Expectation[],
  run: RunFacts,
  opts: { kmsg?: boolean } = {},
): TestRecord[] {
  return records.map((r): TestRecord => {
    if (r.status === 'XFAIL' || r.status === 'XPASS' || r.status === 'SKIP') return r
    const e = expectationFor(entries, run, r.id)
    if (e === undefined) return r
    if (r.status === 'PASS') {
      if (e.status === 'WARN' && !opts.kmsg) return r
      return { ...r, status: 'XPASS', reason: xpassReason(e), expectation: refOf(e) }
    }
    const observed: Observed =
      r.status === 'WARN'
        ? { status: 'WARN', kernelWarnings: r.kernelLog.warnings }
        : { status: r.status, failure: r.failure }
    if (matches(e, observed)) {
      const failure: Failure = r.status === 'WARN' ? { message: r.kernelLog.warnings.join('\n') || r.reason } : r.failure
      const { kernelLog } = r
      return {
        id: r.id, suite: r.suite, durationMs: r.durationMs, ...(kernelLog ? { kernelLog } : {}),
        status: 'XFAIL', reason: xfailReason(run.backend, e, failure.message), failure, expectation: refOf(e),
      }
    }
    if (r.status === 'WARN') return r
    return { ...r, reason: `${r.reason} (fails differently: expected ${describeExpected(e)}, got ${describeObserved(observed)})`, expectation: refOf(e) }
  })
}

/** `--strict-kernel-log`: a test that made the kernel warn fails. */
export function strictKernelLog(records: readonly TestRecord[]): TestRecord[] {
  return records.map((r): TestRecord => {
    if (r.status !== 'WARN') return r
    const message = `the kernel warned during the test: ${r.kernelLog.warnings[0] ?? r.reason}`
    return { ...r, status: 'FAIL', reason: message, failure: { message, exit: KERNEL_WARNING } }
  })
}

/** The `exit` a strict kernel-log failure carries, so `expectations update` records a WARN entry. */
export const KERNEL_WARNING = 'kernel-warning'

/**
 * Whose expectations a run is judged by: the backend's own, except that the remote backend is judged as
 * the backend its agent hosts, because that kernel (or profile) is what answers. The agent's info() says
 * which: a real kernel has no profile (native), the emulator always has one.
 */
export function judgedBackend(backend: string, profile: string | null): string {
  if (backend !== 'remote') return backend
  return profile === null ? 'native' : 'emulator'
}

/** The facts entries are matched against, for a run described by `info`. */
export function runFacts(info: Pick<RunInfo, 'backend' | 'kernel' | 'profile' | 'arch'>): RunFacts {
  return { backend: judgedBackend(info.backend, info.profile), kernel: info.kernel, profile: info.profile, arch: info.arch }
}

// ---------------------------------------------------------------------------------------------------
// `kvmconf expectations update`: the entries a run would need

export interface Update {
  entries: Expectation[]
  added: Expectation[]
  changed: Expectation[]
  removed: Expectation[]
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

/** The run's condition: backend and arch, plus the profile (emulator) or the kernel's major.minor. */
export function conditionFor(info: RunInfo): ExpectationCondition {
  const when: ExpectationCondition = { backend: judgedBackend(info.backend, info.profile) }
  if (info.profile !== null) when.profile = info.profile
  const v = info.profile === null ? parseVersion(info.kernel) : undefined
  if (v !== undefined && v.length >= 2) when.kernelVersion = `>=${v[0]}.${v[1]} <${v[0]}.${(v[1] ?? 0) + 1}`
  when.arch = info.arch
  return when
}

/** How a record failed, as entry fields: errno, else exit, else the first line as a pattern. */
function howItFails(r: Extract<TestRecord, { failure: Failure }>): Pick<Expectation, 'status' | 'errno' | 'exit' | 'failure'> {
  if (r.failure.exit === KERNEL_WARNING) return { status: 'WARN' }
  const status = r.status === 'XFAIL' ? 'FAIL' : r.status
  if (r.failure.errno !== undefined) return { status, errno: r.failure.errno }
  if (r.failure.exit !== undefined) return { status, exit: r.failure.exit }
  if (status !== 'FAIL') return { status }
  return { status, failure: `^${escapeRegExp(firstLine(r.failure.message))}` }
}

export function updateExpectations(result: RunResult, existing: readonly Expectation[], opts: { reason?: string; link?: string } = {}): Update {
  const run = runFacts(result.runInfo)
  const entries = [...existing]
  const added: Expectation[] = []
  const changed: Expectation[] = []
  const removed: Expectation[] = []
  for (const r of result.results) {
    const i = entries.findIndex((e) => applies(e, run, r.id))
    const current = i >= 0 ? entries[i] : undefined
    if (r.status === 'XPASS' && current !== undefined) {
      entries.splice(i, 1)
      removed.push(current)
    } else if (r.status === 'FAIL' || r.status === 'TIMEOUT' || r.status === 'CRASH') {
      const how = howItFails(r)
      if (current !== undefined) {
        const { errno: _e, exit: _x, failure: _f, ...keep } = current
        const next: Expectation = { ...keep, ...how }
        entries[i] = next
        changed.push(next)
      } else {
        const next: Expectation = {
          test: r.id,
          when: conditionFor(result.runInfo),
          ...how,
          reason: opts.reason ?? `TODO: say why this differs (recorded from a run: ${firstLine(r.reason)})`,
          ...(opts.link !== undefined ? { link: opts.link } : {}),
        }
        entries.push(next)
        added.push(next)
      }
    }
  }
  return { entries, added, changed, removed }
}

/** The file format: `{ "expectations": [...] }`, fields in a fixed order, without `source`. */
export function renderExpectations(entries: readonly Expectation[]): string {
  const clean = entries.map(({ test, when, status, errno, exit, failure, reason, link }) => ({ test, when, status, errno, exit, failure, reason, link }))
  return JSON.stringify({ expectations: clean }, null, 2) + '\n'
}
