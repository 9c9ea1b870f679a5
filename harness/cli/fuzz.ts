// kvmconf fuzz: model-based fuzzing of the memslot and KVM Userfault APIs (suites/fuzz) on a backend.

import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { BACKEND_NAMES } from '../backend-names.ts'
import { EXIT_FAIL, EXIT_OK, UsageError, oneOf, withUsage } from './usage.ts'
import { parseInput } from './inputs.ts'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
export const CORPUS_DIR = path.join(ROOT, 'fixtures/fuzz-corpus')

const HELP = `Usage: kvmconf fuzz [options]

Model-based fuzzing (fast-check commands) of memslots, their USERFAULT and LOG_DIRTY_PAGES flags, the
userfault bitmap, guest reads and writes, shmem host memory (punched holes, MADV_DONTNEED, alias
writes), userfaultfd (register, UFFDIO_COPY/CONTINUE, unregister, close, accesses blocked on it) and
KVM_PRE_FAULT_MEMORY, against a small model of the rules. Prints the commands left out on this backend
and why, and the rate; on a failure, the shrunk command sequence as calls, and a replay file written to
fixtures/fuzz-corpus/.

Options:
  --backend NAME   ${BACKEND_NAMES.join(' | ')} (default: emulator)
  --profile NAME   the emulator's kernel profile
  --runs N         command sequences to run (default 100)
  --time D         run for D instead (60s, 2m, 500ms); --runs then bounds it
  --seed S         fast-check's seed (default: random, printed)
  --max-commands N commands per sequence at most (default 30)
  --replay FILE    replay a file of fixtures/fuzz-corpus (its seed, path and commands)
  --output FILE    where a failure's replay file goes (default: fixtures/fuzz-corpus/<backend>-<seed>.json)
  --emulator-bug NAME  self-tests: the emulator with one deliberate bug (fixtures/emulator-bugs)
  -h, --help       this text
`

/** What a replay file holds. */
export interface ReplayFile {
  kind: 'kvmconf-fuzz-replay'
  backend: string
  profile: string | null
  seed: number
  /**
   * The command set it was recorded with (suites/fuzz/commands.ts); absent in files written before sets
   * were versioned, which all used 'v1'.
   */
  commandSet?: 'v1' | 'v2'
  /** fast-check's path of the failing run; absent for a passing run kept as a regression (all `runs` replay). */
  path?: string
  replayPath?: string
  runs: number
  maxCommands: number
  /** The (shrunk) commands as calls, for reading; the replay itself comes from seed and path. */
  commands: string[]
  failure?: string
  note?: string
}

export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim())
  if (m === null) throw new UsageError(`--time ${text}: expected a duration such as 60s, 2m or 500ms`)
  return Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 'm' ? 60_000 : 1000)
}

function positive(option: string, text: string): number {
  const n = Number(text)
  if (!Number.isSafeInteger(n) || n <= 0) throw new UsageError(`--${option} ${text}: expected a positive integer`)
  return n
}

/** A `--replay` file: JSON whose `kind` says it is one. */
function parseReplayJson(text: string, file: string): ReplayFile {
  let replay: unknown
  try {
    replay = JSON.parse(text)
  } catch (e) {
    throw new Error(`${file}: not JSON (${(e as Error).message})`)
  }
  if ((replay as { kind?: unknown } | null)?.kind !== 'kvmconf-fuzz-replay') throw new Error(`--replay ${file}: not a kvmconf fuzz replay file`)
  return replay as ReplayFile
}

async function fuzz(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      backend: { type: 'string', default: 'emulator' },
      profile: { type: 'string' },
      runs: { type: 'string' },
      time: { type: 'string' },
      seed: { type: 'string' },
      'max-commands': { type: 'string' },
      replay: { type: 'string' },
      output: { type: 'string' },
      'emulator-bug': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help) {
    process.stdout.write(HELP)
    return EXIT_OK
  }
  const name = oneOf('backend', values.backend, BACKEND_NAMES)
  const replay = values.replay === undefined ? undefined : await parseInput(values.replay, parseReplayJson)
  const seed = replay?.seed ?? (values.seed === undefined ? undefined : Number(values.seed))
  if (seed !== undefined && !Number.isSafeInteger(seed)) throw new UsageError(`--seed ${values.seed}: expected an integer`)
  const timeMs = values.time === undefined ? undefined : parseDuration(values.time)
  const numRuns = replay?.runs ?? (values.runs === undefined ? undefined : positive('runs', values.runs))
  const maxCommands = replay?.maxCommands ?? (values['max-commands'] === undefined ? 30 : positive('max-commands', values['max-commands']))
  const bug = values['emulator-bug']
  if (bug !== undefined) {
    const { emulatorBugNames } = await import('../../fixtures/emulator-bugs/index.ts')
    if (name !== 'emulator') throw new UsageError('--emulator-bug applies to the emulator backend only')
    oneOf('emulator-bug', bug, emulatorBugNames())
    process.env.KVMCONF_EMULATOR_BUG = bug
  }
  const registry = bug !== undefined ? await import('../../fixtures/emulator-bugs/index.ts') : await import('../../backends/index.ts')
  const load = await registry.loadBackend(name, { profile: values.profile ?? replay?.profile ?? undefined })
  if (!load.available) {
    process.stderr.write(`kvmconf fuzz: the ${name} backend is not available: ${load.reason}\n`)
    return EXIT_FAIL
  }
  const kvm = load.backend
  try {
    const { runFuzz } = await import('../../suites/fuzz/run.ts')
    const info = await kvm.info()
    const r = await runFuzz(kvm, {
      numRuns: timeMs === undefined ? (numRuns ?? 100) : numRuns, timeMs, seed, maxCommands,
      ...(replay !== undefined ? { commandSet: replay.commandSet ?? 'v1' } : {}),
      ...(replay?.path !== undefined ? { path: replay.path, replayPath: replay.replayPath } : {}),
    })
    for (const x of r.excluded) process.stdout.write(`left out: ${x.command}: ${x.reason}\n`)
    const rate = r.commands / (r.elapsedMs / 1000)
    process.stdout.write(`kvmconf fuzz: ${name}${info.profile ? ` (${info.profile})` : ''}, commands ${r.commandSet}, seed ${r.seed}: ${r.runs} runs, ` +
      `${r.commands} commands in ${(r.elapsedMs / 1000).toFixed(1)} s, ${Math.round(rate)} commands/s\n`)
    if (r.failure === null) {
      process.stdout.write('no failure\n')
      return EXIT_OK
    }
    process.stdout.write(`FAILED: ${r.failure.error}\nshrunk command sequence:\n`)
    for (const c of r.failure.commands) process.stdout.write(`  ${c}\n`)
    process.stdout.write(`replay: { seed: ${r.seed}, path: "${r.failure.path}"${r.failure.replayPath ? `, replayPath: "${r.failure.replayPath}"` : ''} }\n`)
    if (replay === undefined) {
      const file: ReplayFile = {
        kind: 'kvmconf-fuzz-replay', backend: name, profile: info.profile, seed: r.seed, commandSet: r.commandSet, path: r.failure.path,
        ...(r.failure.replayPath !== undefined ? { replayPath: r.failure.replayPath } : {}),
        runs: 1, maxCommands, commands: r.failure.commands, failure: r.failure.error,
      }
      const out = values.output ?? path.join(CORPUS_DIR, `${name}-${r.seed >>> 0}.json`)
      mkdirSync(path.dirname(out), { recursive: true })
      writeFileSync(out, JSON.stringify(file, null, 2) + '\n')
      process.stdout.write(`replay file: ${path.relative(process.cwd(), out)} (kvmconf fuzz --backend ${name} --replay ${path.relative(process.cwd(), out)})\n`)
    }
    return EXIT_FAIL
  } finally {
    await kvm.close()
  }
}

export const fuzzVerb = { summary: 'model-based fuzzing of memslots and KVM Userfault', run: (argv: string[]) => withUsage('fuzz', () => fuzz(argv)) }
