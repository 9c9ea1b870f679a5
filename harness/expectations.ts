// Expectations: where a backend is known to differ from upstream, written down with the reason.
//
// An entry names a test, the runs it applies to (backend, kernel release pattern, profile, arch), how
// the test fails there (a pattern its failure message must match: the errno, the exit) and why. A run
// that fails *that way* is an expected failure, reported as a skip whose reason says so; a failure of
// any other kind still fails; a test that passes where an entry expects it to fail is reported as an
// unexpected pass (a failure), so stale entries do not linger. (WPT and Vulkan CTS keep such lists.)

import { readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export interface ExpectationCondition {
  backend?: string
  /** A regular expression over the kernel release (`uname -r`, or the emulator's name). */
  kernel?: string
  profile?: string
  arch?: string
}

export interface Expectation {
  /** The test's full name: `set_memory_region_test > test_mmio_during_vectoring`. */
  test: string
  when: ExpectationCondition
  status: 'FAIL'
  /** A regular expression the failure's message must match for the failure to count as expected. */
  failure: string
  /** Why this backend or kernel differs; required. */
  reason: string
  /** Where the evidence is (a reference, a mailing-list message, a measurement). */
  link?: string
}

export interface RunFacts {
  backend: string
  kernel: string
  profile: string | null
  arch: string
}

const DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/expectations')

export function parseExpectations(text: string, source: string): Expectation[] {
  const data: unknown = JSON.parse(text)
  const entries = (data as { expectations?: unknown }).expectations
  if (!Array.isArray(entries)) throw new Error(`${source}: expected { "expectations": [...] }`)
  return entries.map((e: Partial<Expectation>, i) => {
    for (const field of ['test', 'failure', 'reason'] as const) {
      if (typeof e[field] !== 'string' || e[field] === '') throw new Error(`${source}: entry ${i} needs a "${field}"`)
    }
    if (e.status !== 'FAIL') throw new Error(`${source}: entry ${i}: status must be "FAIL"`)
    new RegExp(e.failure as string)
    return { ...e, when: e.when ?? {} } as Expectation
  })
}

/** Every entry of fixtures/expectations/<backend>.json (none when the file does not exist). */
export function loadExpectations(backend: string, dir = DIR): Expectation[] {
  const file = path.join(dir, `${backend}.json`)
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch {
    return []
  }
  return parseExpectations(text, file)
}

export function applies(e: Expectation, run: RunFacts, test: string): boolean {
  const w = e.when
  return (
    e.test === test &&
    (w.backend === undefined || w.backend === run.backend) &&
    (w.kernel === undefined || new RegExp(w.kernel).test(run.kernel)) &&
    (w.profile === undefined || w.profile === run.profile) &&
    (w.arch === undefined || w.arch === run.arch)
  )
}

/** The entry expecting `test` to fail in this run, if any. */
export function expectationFor(entries: readonly Expectation[], run: RunFacts, test: string): Expectation | undefined {
  return entries.find((e) => applies(e, run, test))
}

/** Whether a failure with `message` is the one `e` expects. */
export function failsAsExpected(e: Expectation, message: string): boolean {
  return new RegExp(e.failure).test(message)
}
