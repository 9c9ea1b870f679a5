// The reporters of `kvmconf run`, by name (`--reporter NAME[=FILE]`), and where each one writes.
//
// Every reporter renders the finished RunResult (after expectations are applied) to text; one
// without a file writes to stdout, so at most one may.

import { writeFile } from 'node:fs/promises'
import type { RunResult } from '../results.ts'
import { ConsoleReporter } from './console.ts'
import { JsonReporter } from './json.ts'
import { JunitReporter } from './junit.ts'
import { KtapReporter } from './ktap.ts'

export interface ResultReporter {
  render(result: RunResult): string
}

export const REPORTERS = {
  console: ConsoleReporter,
  json: JsonReporter,
  ktap: KtapReporter,
  junit: JunitReporter,
} as const satisfies Record<string, { new (): ResultReporter; readonly description: string }>

export type ReporterName = keyof typeof REPORTERS
export const REPORTER_NAMES = Object.keys(REPORTERS) as ReporterName[]

export interface ReporterSpec {
  name: ReporterName
  /** Where it writes; undefined for stdout. */
  file?: string
}

/** Thrown for a --reporter that cannot be served; the CLI turns it into a usage error. */
export class ReporterSpecError extends Error {}

/**
 * `--reporter NAME[=FILE]`, repeatable; `--output FILE` is where a json reporter without its own
 * file writes (the older spelling). json never writes to stdout, and only one reporter may.
 */
export function parseReporterSpecs(values: readonly string[], output: string | undefined): ReporterSpec[] {
  const specs = values.map((v): ReporterSpec => {
    const eq = v.indexOf('=')
    const name = eq < 0 ? v : v.slice(0, eq)
    const file = eq < 0 ? undefined : v.slice(eq + 1)
    if (!(REPORTER_NAMES as string[]).includes(name)) {
      throw new ReporterSpecError(`--reporter ${name}: expected one of ${REPORTER_NAMES.join(', ')}`)
    }
    if (file === '') throw new ReporterSpecError(`--reporter ${v}: the file name is empty`)
    return { name: name as ReporterName, ...(file !== undefined ? { file } : {}) }
  })
  for (const s of specs) {
    if (s.name === 'json' && s.file === undefined) {
      if (output === undefined) throw new ReporterSpecError('--reporter json needs --output FILE (or --reporter json=FILE)')
      s.file = output
    }
  }
  const toStdout = specs.filter((s) => s.file === undefined)
  if (toStdout.length > 1) {
    throw new ReporterSpecError(`--reporter ${toStdout.map((s) => s.name).join(' and ')}: only one reporter can write to stdout; give the others =FILE`)
  }
  return specs
}

export async function writeReports(specs: readonly ReporterSpec[], result: RunResult): Promise<void> {
  for (const spec of specs) {
    const text = new REPORTERS[spec.name]().render(result)
    if (spec.file === undefined) process.stdout.write(text)
    else await writeFile(spec.file, text)
  }
}
