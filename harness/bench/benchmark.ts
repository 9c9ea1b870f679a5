// What a benchmark is, to `kvmconf bench`: a metric measured at a set of parameter points through the
// Backend contract, so the same benchmark runs on the emulator, this machine's /dev/kvm, or an agent.

import type { Backend } from '../backend.ts'
import type { Clock } from './result.ts'

export type Params = Record<string, string | number>

/** One parameter point, ready to sample. */
export interface Sampler {
  /** Measures one sample of the metric (timing with `ctx.measure`). */
  sample(): Promise<number>
  /** Frees what setup made. */
  close(): Promise<void>
}

export interface BenchContext {
  kvm: Backend
  /** Times `fn` on the run's clock, with the planted slowdown (self-tests) added; milliseconds. */
  measure(fn: () => Promise<void>): Promise<number>
  clock: Clock
}

export interface Benchmark {
  name: string
  description: string
  metric: string
  unit: string
  higherIsBetter: boolean
  /** The parameter plotted on the x axis, and the points to measure. */
  x: { name: string; values: number[] }
  /** Further parameters; each combination is one series of the plot. */
  series?: Record<string, (string | number)[]>
  /** Why this backend cannot run the benchmark, or undefined when it can. */
  unmet?(kvm: Backend): Promise<string | undefined>
  /** Why this backend cannot measure one parameter point (a mode it lacks), or undefined when it can. */
  unmetAt?(kvm: Backend, params: Params): Promise<string | undefined>
  setup(ctx: BenchContext, params: Params): Promise<Sampler>
}

/** Every parameter point of a benchmark: x values × series combinations. */
export function pointsOf(b: Benchmark): Params[] {
  let points: Params[] = b.x.values.map((v) => ({ [b.x.name]: v }))
  for (const [name, values] of Object.entries(b.series ?? {})) {
    points = points.flatMap((p) => values.map((v) => ({ ...p, [name]: v })))
  }
  return points
}
