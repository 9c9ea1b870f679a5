// A vitest reporter that turns vitest's test cases into kvmconf's TestRecords (harness/results.ts).
// `kvmconf run` installs it in place of vitest's own output and renders the records itself.

import path from 'node:path'
import type { Reporter, TestCase, TestModule } from 'vitest/node'
import type { TestRecord } from '../results.ts'

/** `suites/properties/bitmap.test.ts` → `properties/bitmap`. */
export function suiteOf(moduleId: string): string {
  const rel = path.relative(path.resolve('suites'), moduleId).split(path.sep).join('/')
  return rel.replace(/\.test\.ts$/, '')
}

/** The test's names from its outermost describe down, joined as vitest prints them. */
export function testId(test: TestCase): string {
  return test.fullName
}

export function toRecord(test: TestCase): TestRecord {
  const result = test.result()
  const durationMs = Math.round(test.diagnostic()?.duration ?? 0)
  const base = { id: testId(test), suite: suiteOf(test.module.moduleId), durationMs }
  switch (result.state) {
    case 'passed':
      return { ...base, status: 'PASS' }
    case 'skipped':
      return { ...base, status: 'SKIP', reason: result.note ?? 'skipped without a reason' }
    case 'failed': {
      const first = result.errors?.[0]
      const message = first?.message?.split('\n')[0] ?? 'failed without an error message'
      return { ...base, status: 'FAIL', reason: message }
    }
    default:
      return { ...base, status: 'FAIL', reason: 'the test did not finish' }
  }
}

export class CollectReporter implements Reporter {
  readonly records: TestRecord[] = []
  readonly unhandled: string[] = []

  onTestRunEnd(testModules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<unknown>): void {
    for (const mod of testModules) {
      for (const test of mod.children.allTests()) this.records.push(toRecord(test))
      // A file that failed to load has no tests: report it so it is not a silent zero.
      for (const error of mod.errors()) {
        this.records.push({
          id: '(module failed to load)',
          suite: suiteOf(mod.moduleId),
          status: 'FAIL',
          reason: error.message ?? String(error),
          durationMs: 0,
        })
      }
    }
    for (const e of unhandledErrors) this.unhandled.push(String((e as Error)?.message ?? e))
  }
}
