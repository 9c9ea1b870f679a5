// kvmconf run: the conformance suites on one backend, through vitest, with kvmconf's own reporters.
//
// vitest runs the backend's conformance project from vitest.config.ts, with this command's setup file
// added (harness/cli/run-setup.ts: crash journal, kernel log); the collect reporter turns its test
// cases into records; the expectations judge them (harness/expectations.ts); the reporters render
// the result; the exit code says whether every result was as expected.

import { execFileSync } from 'node:child_process'
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs'
import { readdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { BACKEND_NAMES, type BackendName } from '../backend-names.ts'
import type { BackendLoad } from '../backend.ts'
import { defaultExpectationFile, judgeRecords, readExpectationFile, runFacts, strictKernelLog, type Expectation } from '../expectations.ts'
import { kernelLogProblem, type KernelLogSource } from '../kernel-log.ts'
import { CollectReporter } from '../reporters/collect.ts'
import { REPORTER_NAMES, ReporterSpecError, parseReporterSpecs, writeReports } from '../reporters/index.ts'
import { exitCodeFor, type RunInfo, type RunResult } from '../results.ts'
import { EXIT_OK, UsageError, oneOf, withUsage } from './usage.ts'
import { ROOT, conformanceProject, redirectBackends, runVitest } from './run-vitest.ts'

export { ROOT }

const BUGGY_BACKENDS = path.join(ROOT, 'fixtures/emulator-bugs/index.ts')

const HELP = `Usage: kvmconf run [options]

Runs the conformance suites on one backend, judges every result against the expectations, and
reports: per suite, how many tests passed, failed and skipped, with every skip's reason.

Options:
  --backend NAME        ${BACKEND_NAMES.join(' | ')} (default: emulator)
  --profile NAME        the emulator's kernel profile (default: the emulator's default)
  --userfault-cap N     KVM_CAP_USERFAULT's number on this kernel (series-specific: 239 in v1/v2, 243 in
                        v3) for the tests that need it; KVM Userfault itself is always probed
  --agent HOST:PORT     remote: the 'kvmconf agent' on the machine under test (sets KVMCONF_AGENT)
  --token-file F        remote: the file holding the agent's token (sets KVMCONF_TOKEN_FILE)
  --suite NAME          run only this suite (repeatable); see the names below
  --test PATTERN        run only tests whose full name matches this regular expression
  --reporter NAME[=FILE]
                        ${REPORTER_NAMES.join(' | ')} (repeatable; default: console). Without =FILE a
                        reporter writes to stdout (only one may); json needs a file
  --output FILE         where a json reporter without =FILE writes
  --expectations FILE   judge results against this expectations file (repeatable) instead of
                        fixtures/expectations/<backend>.json
  --kmsg                mark /dev/kmsg around each test, attach the kernel's lines to it, and mark
                        WARN a test that made the kernel warn, oops or taint (runs files serially);
                        native, or remote through an agent started with --kmsg (its machine's log)
  --strict-kernel-log   with --kmsg: such a test FAILs instead
  --shard I/N           run the I-th of N shards of the suite files (merge them with kvmconf merge)
  --emulator-bug NAME   self-tests: the emulator with one deliberate bug (fixtures/emulator-bugs)
  -h, --help            this text

Statuses: PASS, FAIL, SKIP (with its reason), TIMEOUT, CRASH (the test process died), WARN (passed,
but the kernel warned), XFAIL (failed exactly as an expectation says), XPASS (an expectation says it
fails, and it passed).

Exit codes: 0 every result as expected (PASS, SKIP, XFAIL, WARN); 1 one is not (FAIL, TIMEOUT,
CRASH, XPASS, or an error outside the tests); 2 usage or configuration error; 4 nothing ran because
every test was skipped (kselftest's skip code).
`

/** Suite names: the files under suites/ without `.test.ts` (`set_memory_region`, `properties/bitmap`). */
export async function listSuites(): Promise<string[]> {
  const entries = await readdir(path.join(ROOT, 'suites'), { recursive: true })
  return entries
    .filter((f) => f.endsWith('.test.ts'))
    .map((f) => f.split(path.sep).join('/').replace(/\.test\.ts$/, ''))
    .sort()
}

function kvmconfVersion(): string {
  return (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version
}

/** HEAD of the checkout, `-dirty` when the tree has changes; null outside a git checkout. */
export function gitRevision(cwd = ROOT): string | null {
  try {
    const head = execFileSync('git', ['rev-parse', 'HEAD'], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
    return dirty === '' ? head : `${head}-dirty`
  } catch {
    return null
  }
}

async function loadFor(backend: BackendName, profile: string | undefined, emulatorBug: string | undefined): Promise<BackendLoad> {
  const registry = emulatorBug !== undefined ? await import('../../fixtures/emulator-bugs/index.ts') : await import('../../backends/index.ts')
  return registry.loadBackend(backend, { profile })
}

/** The facts about a run on `load`: what the backend says about itself, plus kvmconf's own version. */
export async function runInfoOf(backend: BackendName, load: BackendLoad, profile?: string): Promise<RunInfo> {
  const base = { backend, kvmconfVersion: kvmconfVersion(), gitRevision: gitRevision(), startedAt: new Date().toISOString() }
  if (!load.available) {
    return { ...base, profile: profile ?? null, kernel: `unavailable: ${load.reason}`, arch: process.arch, host: '' }
  }
  const info = await load.backend.info()
  return { ...base, profile: info.profile, kernel: info.kernelRelease, arch: info.arch, host: info.host }
}

async function runInfoFor(backend: BackendName, profile: string | undefined, emulatorBug?: string, kmsg = false): Promise<RunInfo> {
  const load = await loadFor(backend, profile, emulatorBug)
  try {
    if (kmsg && backend === 'remote' && load.available) await checkAgentKernelLog(load.backend as unknown as KernelLogSource)
    return await runInfoOf(backend, load, profile)
  } finally {
    if (load.available) await load.backend.close()
  }
}

/** `--agent` and `--token-file`: where the remote backend connects (backends/remote/load.ts reads the env). */
export function useAgent(backend: BackendName, agent: string | undefined, tokenFile: string | undefined): void {
  if ((agent !== undefined || tokenFile !== undefined) && backend !== 'remote') {
    throw new UsageError('--agent and --token-file apply to the remote backend only')
  }
  if (agent !== undefined) {
    if (!/^[^\s:]+:\d+$|^\[[0-9a-fA-F:]+\]:\d+$/.test(agent)) throw new UsageError(`--agent ${agent}: expected HOST:PORT`)
    process.env.KVMCONF_AGENT = agent
  }
  if (tokenFile !== undefined) {
    try {
      closeSync(openSync(tokenFile, 'r'))
    } catch (e) {
      throw new UsageError(`--token-file ${tokenFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
    }
    process.env.KVMCONF_TOKEN_FILE = path.resolve(tokenFile)
  }
}

/** `--kmsg` over remote: the agent must serve its kernel log (started with --kmsg), else exit 2 at once. */
async function checkAgentKernelLog(agent: KernelLogSource): Promise<void> {
  try {
    await agent.kernelLogStart('kvmconf run: --kmsg check')
    await agent.kernelLogFinish('kvmconf run: --kmsg check')
  } catch (e) {
    throw new UsageError(`--kmsg: ${(e as Error).message}`)
  }
}

function checkKernelLogReadable(): void {
  const problem = kernelLogProblem()
  if (problem !== undefined) throw new UsageError(`--kmsg: ${problem}`)
}

function loadEntries(files: readonly string[], backend: string): { entries: Expectation[]; files: string[] } {
  // Without --expectations, the backend's own file where there is one.
  const present = files.length > 0 ? [...files] : [defaultExpectationFile(backend)].filter((f) => existsSync(f))
  try {
    return { entries: present.flatMap((f) => readExpectationFile(f)), files: present.map((f) => path.resolve(f)) }
  } catch (e) {
    throw new UsageError(`--expectations: ${(e as Error).message.split('\n')[0]}`)
  }
}

async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      backend: { type: 'string', default: 'emulator' },
      profile: { type: 'string' },
      'userfault-cap': { type: 'string' },
      agent: { type: 'string' },
      'token-file': { type: 'string' },
      suite: { type: 'string', multiple: true },
      test: { type: 'string' },
      reporter: { type: 'string', multiple: true },
      output: { type: 'string' },
      expectations: { type: 'string', multiple: true },
      kmsg: { type: 'boolean' },
      'strict-kernel-log': { type: 'boolean' },
      shard: { type: 'string' },
      'emulator-bug': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  const suites = await listSuites()
  if (values.help) {
    process.stdout.write(HELP + `\nSuites: ${suites.join(', ')}\n`)
    return EXIT_OK
  }
  const backend = oneOf('backend', values.backend, BACKEND_NAMES)
  let reporters
  try {
    reporters = parseReporterSpecs(values.reporter ?? ['console'], values.output)
  } catch (e) {
    if (e instanceof ReporterSpecError) throw new UsageError(e.message)
    throw e
  }
  for (const s of values.suite ?? []) {
    if (!suites.includes(s)) throw new UsageError(`--suite ${s}: no such suite (suites: ${suites.join(', ')})`)
  }
  if (values.profile !== undefined && backend !== 'emulator') {
    throw new UsageError('--profile applies to the emulator backend only')
  }
  useAgent(backend, values.agent, values['token-file'])
  if (backend === 'remote' && (!process.env.KVMCONF_AGENT || !process.env.KVMCONF_TOKEN_FILE)) {
    throw new UsageError('--backend remote needs --agent HOST:PORT and --token-file F (or KVMCONF_AGENT and KVMCONF_TOKEN_FILE)')
  }
  if (values.kmsg && backend !== 'native' && backend !== 'remote') {
    throw new UsageError(`--kmsg reads the kernel log of the machine under test: the native backend's, or the remote agent's`)
  }
  if (values['strict-kernel-log'] && !values.kmsg) throw new UsageError('--strict-kernel-log needs --kmsg')
  if (values.test !== undefined) {
    try {
      new RegExp(values.test)
    } catch (e) {
      throw new UsageError(`--test ${values.test}: ${(e as Error).message}`)
    }
  }
  const shard = values.shard
  if (shard !== undefined) {
    const m = /^(\d+)\/(\d+)$/.exec(shard)
    if (m === null || Number(m[1]) < 1 || Number(m[1]) > Number(m[2])) {
      throw new UsageError(`--shard ${shard}: expected I/N with 1 <= I <= N`)
    }
  }
  const emulatorBug = values['emulator-bug']
  if (emulatorBug !== undefined) {
    const { emulatorBugNames } = await import('../../fixtures/emulator-bugs/index.ts')
    if (backend !== 'emulator') throw new UsageError('--emulator-bug applies to the emulator backend only')
    oneOf('emulator-bug', emulatorBug, emulatorBugNames())
  }
  // Over remote, the agent reads its own machine's log; it says so on the first test if it was not
  // started with --kmsg.
  if (values.kmsg && backend === 'native') checkKernelLogReadable()
  if (values.profile !== undefined) process.env.KVMCONF_PROFILE = values.profile
  if (values['userfault-cap'] !== undefined) {
    const cap = (await import('../kvm-util/userfault.ts')).parseUserfaultCap(values['userfault-cap'])
    if (typeof cap !== 'number') throw new UsageError(cap.error)
    process.env.KVMCONF_USERFAULT_CAP = String(cap) // read by the workers (harness/kvm-util/userfault.ts)
  }
  if (emulatorBug !== undefined) process.env.KVMCONF_EMULATOR_BUG = emulatorBug
  const info = await runInfoFor(backend, values.profile, emulatorBug, values.kmsg === true)
  // A remote run is judged by the expectations of the backend its agent hosts (harness/test.ts alike).
  const facts = runFacts(info)
  const { entries, files } = loadEntries(values.expectations ?? [], facts.backend)

  const journalDir = mkdtempSync(path.join(tmpdir(), 'kvmconf-run-'))
  const journal = path.join(journalDir, 'journal.jsonl')
  process.env.KVMCONF_BACKEND = backend
  process.env.KVMCONF_JOURNAL = journal
  // The workers judge in-test expected failures against the same files (harness/test.ts).
  process.env.KVMCONF_EXPECTATIONS = files.join(path.delimiter)
  if (values.kmsg) process.env.KVMCONF_KMSG = backend === 'remote' ? 'remote' : 'local'

  const runInfo: RunInfo = {
    ...info,
    ...(shard !== undefined ? { shard } : {}),
    ...(values.kmsg ? { kmsg: true, strictKernelLog: values['strict-kernel-log'] === true } : {}),
    expectations: files.map((f) => path.relative(ROOT, f)),
    ...(emulatorBug !== undefined ? { emulatorBug } : {}),
  }

  const collector = new CollectReporter({ backend, journal, ...(values.test !== undefined ? { testNamePattern: values.test } : {}) })
  try {
    await runVitest({
      project: await conformanceProject(backend),
      filters: (values.suite ?? []).map((s) => `suites/${s}.test.ts`),
      ...(shard !== undefined ? { shard } : {}),
      ...(values.test !== undefined ? { testNamePattern: values.test } : {}),
      serial: values.kmsg === true,
      plugins: emulatorBug !== undefined ? [redirectBackends(BUGGY_BACKENDS)] : [],
      collector,
    })
  } catch (e) {
    // vitest refuses a shard count above the number of test files, among other configurations.
    throw new UsageError(`vitest: ${(e as Error).message.split('\n')[0]}`)
  } finally {
    rmSync(journalDir, { recursive: true, force: true })
  }

  // vitest reports some configuration errors as run errors rather than throwing them.
  const refused = collector.errors.find((e) => e.startsWith('--shard'))
  if (refused !== undefined) throw new UsageError(`vitest: ${refused.split('\n')[0]}`)

  let results = judgeRecords(collector.records, entries, facts, { kmsg: values.kmsg === true })
  if (values['strict-kernel-log']) results = strictKernelLog(results)
  const result: RunResult = { runInfo, results, ...(collector.errors.length > 0 ? { errors: collector.errors } : {}) }
  await writeReports(reporters, result)
  return exitCodeFor(result)
}

export const runVerb = { summary: 'run the conformance suites', run: (argv: string[]) => withUsage('run', () => run(argv)) }
