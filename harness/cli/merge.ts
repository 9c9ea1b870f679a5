// kvmconf merge: the JSON results of the shards of one run (`kvmconf run --shard I/N`) as one result.

import { writeFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { renderJson } from '../reporters/json.ts'
import { exitCodeFor, fullId, parseRunResult, type RunInfo, type RunResult } from '../results.ts'
import { EXIT_OK, UsageError, withUsage } from './usage.ts'
import { parseInput } from './inputs.ts'

const HELP = `Usage: kvmconf merge A.json B.json... [--output FILE]

Joins the JSON results of the shards of one run (kvmconf run --shard I/N --reporter json=FILE) into one
result: the same backend, kernel, profile, arch and kvmconf revision, every test once.

Options:
  --output FILE   where the merged result goes (default: stdout)
  -h, --help      this text

Exit codes: as 'kvmconf run' for the merged run: 0 every result as expected, 1 one is not, 4 every
test skipped; 2 usage error, or shards that are not of the same run.
`

/** The fields that must agree for shards to be one run. */
const SAME_RUN: (keyof RunInfo)[] = ['backend', 'profile', 'kernel', 'arch', 'kvmconfVersion', 'gitRevision', 'emulatorBug']

export function mergeResults(parts: readonly { file: string; result: RunResult }[]): RunResult {
  const [first, ...rest] = parts
  if (first === undefined) throw new UsageError('nothing to merge')
  for (const p of rest) {
    for (const k of SAME_RUN) {
      if (JSON.stringify(p.result.runInfo[k]) !== JSON.stringify(first.result.runInfo[k])) {
        throw new UsageError(`${p.file} is not a shard of the run in ${first.file}: ${k} ${JSON.stringify(p.result.runInfo[k])} vs ${JSON.stringify(first.result.runInfo[k])}`)
      }
    }
  }
  const seen = new Map<string, string>()
  for (const p of parts) {
    for (const r of p.result.results) {
      const id = fullId(r)
      const other = seen.get(id)
      if (other !== undefined) throw new UsageError(`${id} is in both ${other} and ${p.file}`)
      seen.set(id, p.file)
    }
  }
  const { shard: _shard, ...info } = first.result.runInfo
  const startedAt = parts.map((p) => p.result.runInfo.startedAt).sort()[0] ?? info.startedAt
  const errors = parts.flatMap((p) => p.result.errors ?? [])
  return {
    kind: 'kvmconf-result',
    runInfo: { ...info, startedAt },
    results: parts.flatMap((p) => p.result.results),
    ...(errors.length > 0 ? { errors } : {}),
  }
}

async function merge(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: { output: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  })
  if (values.help) {
    process.stdout.write(HELP)
    return EXIT_OK
  }
  if (positionals.length === 0) throw new UsageError('name the JSON results to merge')
  const parts = []
  for (const file of positionals) parts.push({ file, result: await parseInput(file, parseRunResult) })
  const merged = mergeResults(parts)
  const text = renderJson(merged)
  if (values.output !== undefined) await writeFile(values.output, text)
  else process.stdout.write(text)
  return exitCodeFor(merged)
}

export const mergeVerb = { summary: 'merge the JSON results of shards', run: (argv: string[]) => withUsage('merge', () => merge(argv)) }
