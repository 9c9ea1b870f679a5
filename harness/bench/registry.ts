// The benchmarks `kvmconf bench` knows. Add one by writing a Benchmark (benchmark.ts) and listing it
// here; `kvmconf bench --bench NAME` picks some, and every run writes JSON and a plot per metric.
// (The demand-paging benchmark will join as rate against vCPU count, one series per uffd mode.)

import type { Benchmark } from './benchmark.ts'
import { memslotChurn } from './memslot-churn.ts'

export const BENCHMARKS: readonly Benchmark[] = [memslotChurn]

export function benchmarkNames(): string[] {
  return BENCHMARKS.map((b) => b.name)
}
