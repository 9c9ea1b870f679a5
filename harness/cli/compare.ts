// kvmconf compare: two runs side by side. Two run results: the conformance differences (new failures,
// fixes, new skips, tests that appeared or went). Two bench results: the A/B test of every metric
// (harness/bench/ab.ts: Mann-Whitney U, p < 0.01, and a change beyond the threshold).

import { parseArgs } from 'node:util'
import { AB_DEFAULTS, compareBench, type MetricComparison } from '../bench/ab.ts'
import { parseBenchResult, type BenchResult } from '../bench/result.ts'
import { asExpected, fullId, parseRunResult, type RunResult, type TestRecord } from '../results.ts'
import { EXIT_FAIL, EXIT_OK, UsageError, withUsage } from './usage.ts'
import { parseInput } from './inputs.ts'

const HELP = `Usage: kvmconf compare BASE.json CAND.json [options]

Compares a candidate run with a base run: both JSON results of 'kvmconf run', or both of 'kvmconf bench'.

Run results: lists every test whose result changed: new failures (not as expected in CAND, as expected
or absent in BASE), fixes, new skips, tests no longer skipped, tests added and removed.

Bench results: for every metric, the medians, their relative change and the two-sided Mann-Whitney U
p-value of the samples; a regression is a change for the worse that is both significant (p < alpha)
and larger than the threshold, as Firecracker's A/B tool decides.

Options:
  --alpha P          significance level (default: ${AB_DEFAULTS.alpha})
  --threshold PCT    smallest relative change that counts, in percent (default: ${AB_DEFAULTS.threshold * 100})
  -h, --help         this text

Exit codes: 0 no regression; 1 a new failure or a performance regression; 2 usage error, or files
that cannot be compared.
`

type Loaded = { kind: 'run'; result: RunResult } | { kind: 'bench'; result: BenchResult }

async function load(file: string): Promise<Loaded> {
  return parseInput(file, (text): Loaded => {
    const kind = (JSON.parse(text) as { kind?: unknown }).kind
    return kind === 'kvmconf-bench' ? { kind: 'bench', result: parseBenchResult(text, file) } : { kind: 'run', result: parseRunResult(text, file) }
  })
}

export type Change = 'new failure' | 'fixed' | 'new skip' | 'no longer skipped' | 'added' | 'removed' | 'changed'

export interface ConformanceChange {
  test: string
  base: TestRecord | undefined
  cand: TestRecord | undefined
  change: Change
}

export function compareRuns(base: RunResult, cand: RunResult): ConformanceChange[] {
  const baseById = new Map(base.results.map((r) => [fullId(r), r]))
  const changes: ConformanceChange[] = []
  for (const c of cand.results) {
    const b = baseById.get(fullId(c))
    baseById.delete(fullId(c))
    const test = fullId(c)
    if (!asExpected(c) && (b === undefined || asExpected(b))) changes.push({ test, base: b, cand: c, change: 'new failure' })
    else if (b === undefined) changes.push({ test, base: b, cand: c, change: 'added' })
    else if (!asExpected(b) && asExpected(c)) changes.push({ test, base: b, cand: c, change: 'fixed' })
    else if (c.status === 'SKIP' && b.status !== 'SKIP') changes.push({ test, base: b, cand: c, change: 'new skip' })
    else if (b.status === 'SKIP' && c.status !== 'SKIP') changes.push({ test, base: b, cand: c, change: 'no longer skipped' })
    else if (b.status !== c.status) changes.push({ test, base: b, cand: c, change: 'changed' })
  }
  for (const [test, b] of baseById) changes.push({ test, base: b, cand: undefined, change: 'removed' })
  return changes
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? []
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd()).join('\n') + '\n'
}

export function renderConformance(changes: readonly ConformanceChange[]): string {
  if (changes.length === 0) return 'No conformance differences.\n'
  const status = (r: TestRecord | undefined) => (r === undefined ? '-' : r.status)
  const rows = [['change', 'base', 'cand', 'test', 'why'], ...changes.map((c) => [c.change, status(c.base), status(c.cand), c.test, c.cand?.reason ?? c.base?.reason ?? ''])]
  const counts = new Map<Change, number>()
  for (const c of changes) counts.set(c.change, (counts.get(c.change) ?? 0) + 1)
  return table(rows) + `\n${[...counts].map(([k, n]) => `${n} ${k}`).join(', ')}\n`
}

const num = (v: number) => (Number.isFinite(v) ? v.toPrecision(4) : '-')

export function renderAb(rows: readonly MetricComparison[]): string {
  const lines = [['metric', 'base median', 'cand median', 'change', 'p', 'verdict']]
  for (const r of rows) {
    const change = Number.isFinite(r.change) ? `${r.change >= 0 ? '+' : ''}${(r.change * 100).toFixed(1)}%` : '-'
    lines.push([r.key, `${num(r.baseMedian)} ${r.unit}`, `${num(r.candMedian)} ${r.unit}`, change, Number.isFinite(r.p) ? r.p.toExponential(2) : '-', r.verdict])
  }
  return table(lines)
}

async function compare(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: {
      alpha: { type: 'string' },
      threshold: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help) {
    process.stdout.write(HELP)
    return EXIT_OK
  }
  if (positionals.length !== 2) throw new UsageError('expected two files: BASE.json CAND.json')
  const alpha = values.alpha === undefined ? AB_DEFAULTS.alpha : Number(values.alpha)
  if (!(alpha > 0 && alpha < 1)) throw new UsageError(`--alpha ${values.alpha}: expected a probability between 0 and 1`)
  const threshold = values.threshold === undefined ? AB_DEFAULTS.threshold : Number(values.threshold.replace(/%$/, '')) / 100
  if (!(threshold >= 0)) throw new UsageError(`--threshold ${values.threshold}: expected a percentage`)
  const [base, cand] = await Promise.all(positionals.map(load)) as [Loaded, Loaded]
  if (base.kind !== cand.kind) throw new UsageError(`cannot compare a ${base.kind} result with a ${cand.kind} result`)

  if (base.kind === 'run' && cand.kind === 'run') {
    const changes = compareRuns(base.result, cand.result)
    process.stdout.write(renderConformance(changes))
    return changes.some((c) => c.change === 'new failure') ? EXIT_FAIL : EXIT_OK
  }
  const b = base.result as BenchResult
  const c = cand.result as BenchResult
  if (b.clock !== c.clock) throw new UsageError(`cannot compare samples of the ${b.clock} clock with samples of the ${c.clock} clock`)
  const rows = compareBench(b, c, { alpha, threshold })
  process.stdout.write(`A/B: ${b.runInfo.backend} ${b.runInfo.gitRevision ?? ''} -> ${c.runInfo.backend} ${c.runInfo.gitRevision ?? ''} (${b.clock} clock; regression: p < ${alpha} and a change beyond ${threshold * 100}%)\n`)
  process.stdout.write(renderAb(rows))
  const regressions = rows.filter((r) => r.verdict === 'regression')
  process.stdout.write(regressions.length === 0 ? 'No performance regression.\n' : `${regressions.length} performance regression(s).\n`)
  return regressions.length > 0 ? EXIT_FAIL : EXIT_OK
}

export const compareVerb = { summary: 'compare two runs or two benchmark results', run: (argv: string[]) => withUsage('compare', () => compare(argv)) }
