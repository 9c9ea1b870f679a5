// The result of a conformance run: one record per test and the facts about the run.
// Reporters (console, JSON, later KTAP/JUnit) render this; `kvmconf compare` will diff two of them.

export type TestStatus = 'PASS' | 'FAIL' | 'SKIP'

export interface TestRecord {
  /** The test's full name inside its suite: `set_memory_region_test > test_add_max_memory_regions`. */
  id: string
  /** The suite file, without `.test.ts`: `set_memory_region`. */
  suite: string
  status: TestStatus
  /** Why it skipped (always present on SKIP) or the first line of why it failed. */
  reason?: string
  durationMs: number
}

export interface RunInfo {
  backend: string
  /** The emulator's kernel profile; null for a real kernel. */
  profile: string | null
  /** uname -r of the kernel under test (the emulator names its profile). */
  kernel: string
  arch: string
  host: string
  kvmconfVersion: string
  startedAt: string
}

export interface RunResult {
  runInfo: RunInfo
  results: TestRecord[]
}

export interface SuiteCounts {
  passed: number
  failed: number
  skipped: number
}

export function countBySuite(results: readonly TestRecord[]): Map<string, SuiteCounts> {
  const counts = new Map<string, SuiteCounts>()
  for (const r of results) {
    const c = counts.get(r.suite) ?? { passed: 0, failed: 0, skipped: 0 }
    if (r.status === 'PASS') c.passed++
    else if (r.status === 'FAIL') c.failed++
    else c.skipped++
    counts.set(r.suite, c)
  }
  return counts
}
