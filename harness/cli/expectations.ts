// kvmconf expectations: the expectations files (harness/expectations.ts). `update` writes the entries a
// run would need to be as expected: new entries for its unexpected failures, entries that expected
// another failure brought up to date, entries whose test now passes (XPASS) removed. `check` parses files.

import { writeFile } from 'node:fs/promises'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { defaultExpectationFile, readExpectationFile, renderExpectations, updateExpectations, type Expectation } from '../expectations.ts'
import { parseRunResult } from '../results.ts'
import { EXIT_OK, UsageError, withUsage } from './usage.ts'
import { parseInput } from './inputs.ts'
import { ROOT } from './run.ts'

const HELP = `Usage: kvmconf expectations update RESULT.json [options]
       kvmconf expectations check FILE...

update   Writes the expectations a run needs to be as expected: the entries of the files it was judged
         against (or --expectations), plus an entry for every FAIL, TIMEOUT and CRASH it had (the errno
         or exit it failed with, the run's backend, profile or kernel version, and arch), minus the
         entries of tests that passed unexpectedly. Every new entry needs a reason: give --reason, or
         edit the "TODO" the update writes.
check    Parses expectations files and says how many entries each has.

Options (update):
  --expectations FILE   start from this file (repeatable; default: the files named in the result,
                        else fixtures/expectations/<backend>.json)
  --output FILE         where the file goes (default: stdout)
  --reason TEXT         the reason of every new entry
  --link TEXT           the link of every new entry (a bug, a mailing-list message)
  -h, --help            this text

Exit codes: 0 written; 2 usage error or an unreadable input.
`

function readEntries(files: readonly string[]): Expectation[] {
  try {
    return files.flatMap((f) => readExpectationFile(f))
  } catch (e) {
    throw new UsageError((e as Error).message)
  }
}

async function update(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: {
      expectations: { type: 'string', multiple: true },
      output: { type: 'string' },
      reason: { type: 'string' },
      link: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help) {
    process.stdout.write(HELP)
    return EXIT_OK
  }
  if (positionals.length !== 1) throw new UsageError('update: expected one RESULT.json')
  const file = positionals[0] as string
  const result = await parseInput(file, parseRunResult)
  const recorded = (result.runInfo.expectations ?? []).map((f) => path.resolve(ROOT, f))
  const sources = values.expectations ?? (recorded.length > 0 ? recorded : [])
  let existing = readEntries(sources)
  if (values.expectations === undefined && recorded.length === 0) {
    try {
      existing = readExpectationFile(defaultExpectationFile(result.runInfo.backend))
    } catch {
      existing = []
    }
  }
  const u = updateExpectations(result, existing, { ...(values.reason !== undefined ? { reason: values.reason } : {}), ...(values.link !== undefined ? { link: values.link } : {}) })
  const rendered = renderExpectations(u.entries)
  if (values.output !== undefined) await writeFile(values.output, rendered)
  else process.stdout.write(rendered)
  const todo = u.entries.filter((e) => e.reason.startsWith('TODO')).length
  process.stderr.write(`kvmconf expectations update: ${u.added.length} added, ${u.changed.length} changed, ${u.removed.length} removed, ${u.entries.length} in all${todo > 0 ? `; ${todo} need a reason (search for TODO)` : ''}\n`)
  return EXIT_OK
}

async function check(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, strict: true, allowPositionals: true, options: { help: { type: 'boolean', short: 'h' } } })
  if (values.help) {
    process.stdout.write(HELP)
    return EXIT_OK
  }
  if (positionals.length === 0) throw new UsageError('check: name at least one file')
  for (const f of positionals) process.stdout.write(`${f}: ${readEntries([f]).length} entries\n`)
  return EXIT_OK
}

async function expectations(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv
  if (sub === '--help' || sub === '-h') {
    process.stdout.write(HELP)
    return EXIT_OK
  }
  if (sub === undefined) throw new UsageError('expected a subcommand: update or check')
  if (sub === 'update') return update(rest)
  if (sub === 'check') return check(rest)
  throw new UsageError(`unknown subcommand '${sub}': expected update or check`)
}

export const expectationsVerb = {
  summary: 'update or check expectations files',
  run: (argv: string[]) => withUsage('expectations', () => expectations(argv)),
}
