// The benchmarks `kvmconf bench` knows. Add one by writing a Benchmark (benchmark.ts) and listing it
// here; `kvmconf bench --bench NAME` picks some, and every run writes JSON and a plot per metric.

import type { Benchmark } from './benchmark.ts'
import { demandPaging } from './demand-paging.ts'
import { memslotChurn } from './memslot-churn.ts'

export const BENCHMARKS: readonly Benchmark[] = [memslotChurn, demandPaging]

export function benchmarkNames(): string[] {
  return BENCHMARKS.map((b) => b.name)
}
