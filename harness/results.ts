// The result of a conformance run: one record per test and the facts about the run.
//
// Reporters (console, KTAP, JUnit, JSON, HTML) render it; `kvmconf merge` joins shards of it;
// `kvmconf compare` diffs two of it; `kvmconf expectations update` derives expectation entries from it.
// The record is a union on `status` so that impossible combinations (a SKIP without a reason, an XFAIL
// without the expectation it met) cannot be written down.

/**
 * PASS, FAIL and SKIP as everywhere; TIMEOUT: the test or its vCPU missed its deadline; CRASH: the test
 * process died; WARN: passed, but the kernel warned, oopsed or became tainted during it (`--kmsg`);
 * XFAIL: failed exactly as an expectation entry says it does on this run; XPASS: an entry expects a
 * failure that did not happen (kselftest's KSFT_XPASS; here it fails the run, so stale entries go).
 */
export const STATUSES = ['PASS', 'FAIL', 'SKIP', 'TIMEOUT', 'CRASH', 'WARN', 'XFAIL', 'XPASS'] as const
export type TestStatus = (typeof STATUSES)[number]

/** What a failure was, as far as the harness can tell (harness/reporters/outcome.ts derives it). */
export interface Failure {
  /** The failure's message (all of it; `reason` on the record is its first line). */
  message: string
  /** The ioctl or syscall involved: `KVM_SET_USER_MEMORY_REGION2`. */
  op?: string
  /** What the test expected: an errno name, `success`, a vCPU exit kind. */
  expected?: string
  /** The errno the call produced, or `success` when it succeeded where an error was expected. */
  errno?: string
  /** The vCPU exit (`shutdown`, `mmio`), signal (`SIGBUS`) or process exit the test saw instead. */
  exit?: string
  /** fast-check's seed and path, to replay a failing property. */
  seed?: number
  path?: string
}

/** The kernel log around one test (`kvmconf run --kmsg`, native backend). */
export interface KernelLog {
  /** Every kernel line between the test's start and end markers, as `<level>: <text>`. */
  lines: string[]
  /** The lines that are a warning, an oops or a BUG (WARN_ON splats, not pr_warn chatter). */
  warnings: string[]
  /** /proc/sys/kernel/tainted before and after the test. */
  taintBefore: number
  taintAfter: number
}

/** The expectation entry a record was judged against (harness/expectations.ts), as the report shows it. */
export interface ExpectationRef {
  status: 'FAIL' | 'TIMEOUT' | 'CRASH' | 'WARN'
  reason: string
  errno?: string
  exit?: string
  failure?: string
  link?: string
  /** The file the entry came from. */
  source?: string
}

interface RecordBase {
  /** The test's full name inside its suite: `set_memory_region_test > test_add_max_memory_regions`. */
  id: string
  /** The suite file, without `.test.ts`: `set_memory_region`. */
  suite: string
  durationMs: number
  kernelLog?: KernelLog
}

export type TestRecord =
  | (RecordBase & { status: 'PASS'; reason?: undefined })
  | (RecordBase & { status: 'SKIP'; reason: string })
  | (RecordBase & {
      status: 'FAIL' | 'TIMEOUT' | 'CRASH'
      reason: string
      failure: Failure
      /** Present when an entry expected a failure of another kind than this one. */
      expectation?: ExpectationRef
    })
  | (RecordBase & { status: 'WARN'; reason: string; kernelLog: KernelLog })
  | (RecordBase & { status: 'XFAIL'; reason: string; failure: Failure; expectation: ExpectationRef })
  | (RecordBase & { status: 'XPASS'; reason: string; expectation: ExpectationRef })

export interface RunInfo {
  backend: string
  /** The emulator's kernel profile; null for a real kernel. */
  profile: string | null
  /** uname -r of the kernel under test (the emulator names its profile). */
  kernel: string
  arch: string
  host: string
  kvmconfVersion: string
  /** `git rev-parse HEAD` of the kvmconf checkout, `-dirty` when it has changes; null outside git. */
  gitRevision: string | null
  startedAt: string
  /** `i/n` when this is one shard of a run (`--shard`); merged results drop it. */
  shard?: string
  /** Whether kernel log checks ran (`--kmsg`), and whether a kernel warning fails the test. */
  kmsg?: boolean
  strictKernelLog?: boolean
  /** The expectation files the run was judged against. */
  expectations?: string[]
  /** The deliberately broken emulator variant (self-tests only; fixtures/emulator-bugs). */
  emulatorBug?: string
}

export interface RunResult {
  kind?: 'kvmconf-result'
  runInfo: RunInfo
  results: TestRecord[]
  /** Errors outside any test (a worker that died, an unhandled rejection): each fails the run. */
  errors?: string[]
}

/** Whether a record is as expected: PASS, SKIP, XFAIL, and WARN unless --strict-kernel-log made it FAIL. */
export function asExpected(r: TestRecord): boolean {
  return r.status === 'PASS' || r.status === 'SKIP' || r.status === 'XFAIL' || r.status === 'WARN'
}

export const EXIT_AS_EXPECTED = 0
export const EXIT_NOT_AS_EXPECTED = 1
/** kselftest's KSFT_SKIP: nothing ran because every test was skipped. */
export const EXIT_NOTHING_RAN = 4

/** 0 when every result is as expected, 1 when one is not (or an error hit the run), 4 when all skipped. */
export function exitCodeFor(result: RunResult): number {
  if ((result.errors?.length ?? 0) > 0 || !result.results.every(asExpected)) return EXIT_NOT_AS_EXPECTED
  if (result.results.every((r) => r.status === 'SKIP')) return EXIT_NOTHING_RAN
  return EXIT_AS_EXPECTED
}

export type StatusCounts = Record<TestStatus, number>

export function emptyCounts(): StatusCounts {
  return Object.fromEntries(STATUSES.map((s) => [s, 0])) as StatusCounts
}

export function countStatuses(results: readonly TestRecord[]): StatusCounts {
  const c = emptyCounts()
  for (const r of results) c[r.status]++
  return c
}

/** Per suite, in the order suites first appear. */
export function countBySuite(results: readonly TestRecord[]): Map<string, StatusCounts> {
  const counts = new Map<string, StatusCounts>()
  for (const r of results) {
    const c = counts.get(r.suite) ?? emptyCounts()
    c[r.status]++
    counts.set(r.suite, c)
  }
  return counts
}

/** The records of each suite, in the order suites first appear. */
export function groupBySuite(results: readonly TestRecord[]): Map<string, TestRecord[]> {
  const groups = new Map<string, TestRecord[]>()
  for (const r of results) groups.set(r.suite, [...(groups.get(r.suite) ?? []), r])
  return groups
}

/** `suite > id`: a test's name across suites. */
export function fullId(r: Pick<TestRecord, 'suite' | 'id'>): string {
  return `${r.suite} > ${r.id}`
}

/** One line summing up the counts: `48 passed, 0 failed, 17 skipped` plus any other status present. */
export function summaryLine(c: StatusCounts): string {
  const parts = [`${c.PASS} passed`, `${c.FAIL} failed`, `${c.SKIP} skipped`]
  const extra: [TestStatus, string][] = [
    ['XFAIL', 'failed as expected'],
    ['XPASS', 'passed unexpectedly'],
    ['WARN', 'passed with kernel warnings'],
    ['TIMEOUT', 'timed out'],
    ['CRASH', 'crashed'],
  ]
  for (const [s, words] of extra) if (c[s] > 0) parts.push(`${c[s]} ${words}`)
  return parts.join(', ')
}

/** Reads a RunResult written by the JSON reporter; a configuration error names the file. */
export function parseRunResult(text: string, source: string): RunResult {
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch (e) {
    throw new Error(`${source}: not JSON (${(e as Error).message})`)
  }
  const r = data as Partial<RunResult>
  if (typeof r !== 'object' || r === null || typeof r.runInfo !== 'object' || !Array.isArray(r.results)) {
    throw new Error(`${source}: not a kvmconf run result (expected { runInfo, results })`)
  }
  for (const [i, rec] of r.results.entries()) {
    if (typeof rec?.id !== 'string' || typeof rec.suite !== 'string' || !(STATUSES as readonly string[]).includes(rec.status)) {
      throw new Error(`${source}: results[${i}] is not a test record`)
    }
  }
  return r as RunResult
}
