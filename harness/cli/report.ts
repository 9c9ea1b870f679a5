// kvmconf report: a run's JSON result as a self-contained HTML page (harness/reporters/html.ts), with
// the plots of any bench results given.

import { writeFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { parseBenchResult } from '../bench/result.ts'
import { renderHtml } from '../reporters/html.ts'
import { parseRunResult } from '../results.ts'
import { EXIT_OK, UsageError, withUsage } from './usage.ts'
import { parseInput } from './inputs.ts'

const HELP = `Usage: kvmconf report RESULT.json --html OUT.html [--bench BENCH.json]...

Writes a self-contained HTML page of a run: the verdict, counts per suite, every result that is not as
expected with its details (operation, expected and actual errno or exit, seed, kernel log), kernel
warnings, expected failures, skip reasons, every test, and the plots of the bench results given.

Options:
  --html FILE      where the page goes (required)
  --bench FILE     a 'kvmconf bench' result whose plots the page shows (repeatable)
  -h, --help       this text

Exit codes: 0 written; 2 usage error or an unreadable input.
`

async function report(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: { html: { type: 'string' }, bench: { type: 'string', multiple: true }, help: { type: 'boolean', short: 'h' } },
  })
  if (values.help) {
    process.stdout.write(HELP)
    return EXIT_OK
  }
  if (positionals.length !== 1) throw new UsageError('expected one RESULT.json')
  if (values.html === undefined) throw new UsageError('--html FILE is required')
  const file = positionals[0] as string
  const result = await parseInput(file, parseRunResult)
  const benches = []
  for (const b of values.bench ?? []) benches.push(await parseInput(b, parseBenchResult))
  try {
    await writeFile(values.html, renderHtml(result, benches))
  } catch (e) {
    throw new UsageError((e as Error).message)
  }
  process.stdout.write(`wrote ${values.html}\n`)
  return EXIT_OK
}

export const reportVerb = { summary: 'write an HTML report of a run', run: (argv: string[]) => withUsage('report', () => report(argv)) }
