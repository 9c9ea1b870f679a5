// The bench result format (`kvmconf bench --output FILE`), read by `kvmconf compare`, `kvmconf report`
// and the SVG plots. One metric record per benchmark, metric and parameter point, with every sample:
//
//   { "kind": "kvmconf-bench", "version": 1, "runInfo": {...}, "clock": "wall", "repeat": 10,
//     "metrics": [ { "benchmark": "memslot_churn", "metric": "memslot create+delete rate",
//                    "unit": "pairs/s", "higherIsBetter": true, "x": "slots", "params": { "slots": 64 },
//                    "samples": [41234.5, ...] } ] }
//
// `x` names the parameter a plot puts on its horizontal axis; the other params name the series (for
// demand paging: rate against vCPU count, one line per uffd mode). Samples stay raw: the A/B test ranks
// them, and a mean of timings on a shared machine hides what the ranks see.

import type { RunInfo } from '../results.ts'

export type Clock = 'wall' | 'cpu'

export interface BenchMetric {
  benchmark: string
  metric: string
  unit: string
  higherIsBetter: boolean
  x: string
  params: Record<string, string | number>
  samples: number[]
  /** Why this point has no samples (a capability the backend lacks). */
  skipped?: string
}

export interface BenchResult {
  kind: 'kvmconf-bench'
  version: 1
  runInfo: RunInfo
  /** What a sample's time is: elapsed time, or the CPU time of the kvmconf process (robust to neighbours). */
  clock: Clock
  repeat: number
  metrics: BenchMetric[]
}

export function parseBenchResult(text: string, source: string): BenchResult {
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch (e) {
    throw new Error(`${source}: not JSON (${(e as Error).message})`)
  }
  const b = data as Partial<BenchResult>
  if (b?.kind !== 'kvmconf-bench' || b.version !== 1 || !Array.isArray(b.metrics)) {
    throw new Error(`${source}: not a kvmconf bench result (expected kind "kvmconf-bench", version 1)`)
  }
  for (const [i, m] of b.metrics.entries()) {
    if (typeof m?.benchmark !== 'string' || typeof m.metric !== 'string' || !Array.isArray(m.samples) || typeof m.higherIsBetter !== 'boolean') {
      throw new Error(`${source}: metrics[${i}] needs benchmark, metric, higherIsBetter and samples[]`)
    }
  }
  return b as BenchResult
}

/** What identifies a metric across two runs: benchmark, metric and every parameter. */
export function metricKey(m: Pick<BenchMetric, 'benchmark' | 'metric' | 'params'>): string {
  const params = Object.entries(m.params).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k}=${v}`).join(',')
  return `${m.benchmark} ${m.metric} [${params}]`
}

/** The series a metric belongs to in its plot: its params other than x. */
export function seriesOf(m: Pick<BenchMetric, 'x' | 'params'>): string {
  return Object.entries(m.params).filter(([k]) => k !== m.x).map(([k, v]) => `${k}=${v}`).join(', ') || 'all'
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2
}
