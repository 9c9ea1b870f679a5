// A vitest reporter that turns vitest's test cases into kvmconf's TestRecords (harness/results.ts).
// `kvmconf run` installs it in place of vitest's own output and renders the records itself.
//
// Where the facts come from: vitest's result state and note, the first error's fields and message
// (outcome.ts), `task.meta.kvmconf` (an in-test XFAIL or XPASS from harness/test.ts, the kernel log from
// --kmsg), and, for tests a dead worker never reported, the run journal (harness/cli/run-setup.ts).

import { readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Reporter, TestCase, TestModule } from 'vitest/node'
import { xfailReason, refOf, xpassReason } from '../expectations.ts'
import { describeKernelLog, kernelWarned } from '../kernel-log.ts'
import type { TestRecord } from '../results.ts'
import type { JournalEntry } from '../cli/run-setup.ts'
import { failedStatusOf, failureOf, firstLine, type ErrorLike, type KvmconfTaskMeta } from './outcome.ts'

const SUITES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../suites')

/** `suites/properties/bitmap.test.ts` → `properties/bitmap`. */
export function suiteOf(moduleId: string, suitesDir = SUITES): string {
  const rel = path.relative(suitesDir, moduleId).split(path.sep).join('/')
  return rel.replace(/\.(test|fixture)\.ts$/, '')
}

/** What a finished test left behind, from vitest's TestCase or from a journal line. */
export interface TestParts {
  state: 'passed' | 'failed' | 'skipped'
  note?: string | undefined
  error?: ErrorLike | undefined
  meta?: KvmconfTaskMeta | undefined
  durationMs: number
}

/** The one place a finished test becomes a record. */
export function recordOf(base: { id: string; suite: string; backend: string }, parts: TestParts): TestRecord {
  const { id, suite } = base
  const common = { id, suite, durationMs: Math.round(parts.durationMs) }
  const kernelLog = parts.meta?.kernelLog
  const withLog = kernelLog !== undefined ? { ...common, kernelLog } : common
  const xfail = parts.meta?.xfail
  const xpass = parts.meta?.xpass
  switch (parts.state) {
    case 'passed':
      if (kernelLog !== undefined && kernelWarned(kernelLog)) return { ...common, status: 'WARN', reason: describeKernelLog(kernelLog), kernelLog }
      return { ...withLog, status: 'PASS' }
    case 'skipped':
      if (xfail !== undefined) {
        return {
          ...withLog,
          status: 'XFAIL',
          reason: xfailReason(base.backend, xfail.expectation, xfail.failure.message),
          failure: xfail.failure,
          expectation: refOf(xfail.expectation),
        }
      }
      return { ...withLog, status: 'SKIP', reason: parts.note ?? 'skipped without a reason' }
    case 'failed': {
      if (xpass !== undefined) return { ...withLog, status: 'XPASS', reason: xpassReason(xpass.expectation), expectation: refOf(xpass.expectation) }
      const failure = failureOf(parts.error)
      return { ...withLog, status: failedStatusOf(parts.error), reason: firstLine(failure.message), failure }
    }
  }
}

function fromTestCase(test: TestCase): TestParts | undefined {
  const result = test.result()
  const meta = test.meta().kvmconf
  const durationMs = test.diagnostic()?.duration ?? 0
  switch (result.state) {
    case 'passed':
      return { state: 'passed', meta, durationMs }
    case 'skipped':
      return { state: 'skipped', note: result.note, meta, durationMs }
    case 'failed':
      return { state: 'failed', error: result.errors?.[0] as ErrorLike | undefined, meta, durationMs }
    default:
      return undefined
  }
}

function fromJournal(end: Extract<JournalEntry, { event: 'end' }>): TestParts {
  const state = end.state === 'pass' ? 'passed' : end.state === 'skip' ? 'skipped' : 'failed'
  return { state, note: end.note, error: end.error, meta: end.meta, durationMs: end.durationMs }
}

export function readJournal(file: string | undefined): Map<string, JournalEntry[]> {
  const byId = new Map<string, JournalEntry[]>()
  if (file === undefined) return byId
  let text = ''
  try {
    text = readFileSync(file, 'utf8')
  } catch {
    return byId
  }
  for (const line of text.split('\n')) {
    if (line === '') continue
    let entry: JournalEntry
    try {
      entry = JSON.parse(line) as JournalEntry
    } catch {
      continue // a line cut short by the worker's death
    }
    byId.set(entry.id, [...(byId.get(entry.id) ?? []), entry])
  }
  return byId
}

export interface CollectOptions {
  backend: string
  /** The run journal the setup file wrote (recovers tests a dead worker never reported). */
  journal?: string
  /** Where suite files live, to name suites (default: suites/). */
  suitesDir?: string
  /** `--test`: tests whose name does not match were filtered out, not skipped; they get no record. */
  testNamePattern?: string
}

export class CollectReporter implements Reporter {
  readonly records: TestRecord[] = []
  /** Errors outside any test; each fails the run. */
  readonly errors: string[] = []

  constructor(private readonly opts: CollectOptions) {}

  onTestRunEnd(testModules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<unknown>): void {
    const journal = readJournal(this.opts.journal)
    const messages = unhandledErrors.map((e) => {
      const err = e as { message?: unknown; cause?: { message?: unknown } }
      const cause = typeof err?.cause?.message === 'string' ? ` (${err.cause.message})` : ''
      return `${String(err?.message ?? e)}${cause}`
    })
    const pattern = this.opts.testNamePattern !== undefined ? new RegExp(this.opts.testNamePattern) : undefined
    const died = messages.find((m) => /Worker .*(exited|emitted error)|Channel closed|process exited/i.test(m))
    for (const mod of testModules) {
      const suite = suiteOf(mod.moduleId, this.opts.suitesDir)
      let crashedTest: string | undefined
      for (const test of mod.children.allTests()) {
        if (pattern !== undefined && !pattern.test(test.fullName)) continue
        const base = { id: test.fullName, suite }
        const parts = fromTestCase(test)
        if (parts !== undefined) {
          this.records.push(recordOf({ ...base, backend: this.opts.backend }, parts))
          continue
        }
        // Not reported: the worker died. The journal knows whether it finished, ran, or never started.
        const events = journal.get(test.id) ?? []
        const end = events.find((e): e is Extract<JournalEntry, { event: 'end' }> => e.event === 'end')
        if (end !== undefined) {
          this.records.push(recordOf({ ...base, backend: this.opts.backend }, fromJournal(end)))
        } else if (events.length > 0 || crashedTest === undefined) {
          crashedTest ??= test.fullName
          const why = died ?? 'the test did not finish'
          const message = events.length > 0 ? `the test process died during this test: ${why}` : `the test did not report a result: ${why}`
          this.records.push({ ...base, durationMs: 0, status: died ? 'CRASH' : 'FAIL', reason: message, failure: { message, exit: died ? 'worker died' : 'unfinished' } })
        } else {
          const message = `not run: the test process died during "${crashedTest}"`
          this.records.push({ ...base, durationMs: 0, status: 'CRASH', reason: message, failure: { message, exit: 'worker died' } })
        }
      }
      // A file that failed to load has no tests: report it so it is not a silent zero.
      for (const error of mod.errors()) {
        const message = error.message ?? String(error)
        this.records.push({ id: '(module failed to load)', suite, status: 'FAIL', reason: firstLine(message), failure: { message }, durationMs: 0 })
      }
    }
    // A worker's death that a CRASH record already names is not also a run error.
    const attributed = this.records.some((r) => r.status === 'CRASH')
    this.errors.push(...messages.filter((m) => !(attributed && m === died)))
  }
}
