// kvmconf run: the conformance suites on one backend, through vitest, with kvmconf's own reporters.

import { readFile, readdir } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { BACKEND_NAMES, type BackendName } from '../backend-names.ts'
import { CollectReporter } from '../reporters/collect.ts'
import { renderConsole } from '../reporters/console.ts'
import { writeJson } from '../reporters/json.ts'
import type { RunInfo, RunResult } from '../results.ts'
import { EXIT_ALL_SKIPPED, EXIT_FAIL, EXIT_OK, UsageError, oneOf, withUsage } from './usage.ts'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const REPORTERS = ['console', 'json'] as const

const HELP = `Usage: kvmconf run [options]

Runs the conformance suites on one backend and prints, per suite, how many tests passed, failed and
skipped, with every skip's reason.

Options:
  --backend NAME     ${BACKEND_NAMES.join(' | ')} (default: emulator)
  --profile NAME     the emulator's kernel profile (default: the emulator's default)
  --suite NAME       run only this suite (repeatable); see the names below
  --reporter NAME    console | json (repeatable; default: console)
  --output FILE      where the json reporter writes (required with --reporter json)
  -h, --help         this text

Exit codes: 0 every test passed or skipped, 1 a test failed, 2 usage error, 4 every test skipped.
`

/** Suite names: the files under suites/ without `.test.ts` (`set_memory_region`, `properties/bitmap`). */
export async function listSuites(): Promise<string[]> {
  const entries = await readdir(path.join(ROOT, 'suites'), { recursive: true })
  return entries
    .filter((f) => f.endsWith('.test.ts'))
    .map((f) => f.split(path.sep).join('/').replace(/\.test\.ts$/, ''))
    .sort()
}

async function kvmconfVersion(): Promise<string> {
  const pkg = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }
  return pkg.version
}

async function runInfoFor(backend: BackendName, profile: string | undefined): Promise<RunInfo> {
  const { loadBackend } = await import('../../backends/index.ts')
  const load = await loadBackend(backend, { profile })
  const base = { backend, kvmconfVersion: await kvmconfVersion(), startedAt: new Date().toISOString() }
  if (!load.available) {
    return { ...base, profile: profile ?? null, kernel: `unavailable: ${load.reason}`, arch: process.arch, host: '' }
  }
  const info = await load.backend.info()
  await load.backend.close()
  return { ...base, profile: info.profile, kernel: info.kernelRelease, arch: info.arch, host: info.host }
}

async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      backend: { type: 'string', default: 'emulator' },
      profile: { type: 'string' },
      suite: { type: 'string', multiple: true },
      reporter: { type: 'string', multiple: true },
      output: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  const suites = await listSuites()
  if (values.help) {
    process.stdout.write(HELP + `\nSuites: ${suites.join(', ')}\n`)
    return EXIT_OK
  }
  const backend = oneOf('backend', values.backend, BACKEND_NAMES)
  const reporters = (values.reporter ?? ['console']).map((r) => oneOf('reporter', r, REPORTERS))
  if (reporters.includes('json') && values.output === undefined) {
    throw new UsageError('--reporter json needs --output FILE')
  }
  for (const s of values.suite ?? []) {
    if (!suites.includes(s)) throw new UsageError(`--suite ${s}: no such suite (suites: ${suites.join(', ')})`)
  }
  if (values.profile !== undefined && backend !== 'emulator') {
    throw new UsageError('--profile applies to the emulator backend only')
  }

  process.env.KVMCONF_BACKEND = backend
  if (values.profile !== undefined) process.env.KVMCONF_PROFILE = values.profile
  const runInfo = await runInfoFor(backend, values.profile)

  const collector = new CollectReporter()
  const { startVitest } = await import('vitest/node')
  const filters = (values.suite ?? []).map((s) => `suites/${s}.test.ts`)
  const vitest = await startVitest('test', filters, {
    root: ROOT,
    config: path.join(ROOT, 'vitest.config.ts'),
    project: [backend],
    watch: false,
    reporters: [collector],
  })
  await vitest.close()

  const result: RunResult = { runInfo, results: collector.records }
  if (reporters.includes('console')) process.stdout.write(renderConsole(result))
  if (reporters.includes('json') && values.output !== undefined) await writeJson(result, values.output)
  for (const e of collector.unhandled) process.stderr.write(`unhandled error during the run: ${e}\n`)

  const failed = result.results.some((r) => r.status === 'FAIL') || collector.unhandled.length > 0
  if (failed) return EXIT_FAIL
  if (result.results.length > 0 && result.results.every((r) => r.status === 'SKIP')) return EXIT_ALL_SKIPPED
  return EXIT_OK
}

export const runVerb = { summary: 'run the conformance suites', run: (argv: string[]) => withUsage('run', () => run(argv)) }
