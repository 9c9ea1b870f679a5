// Runs benchmarks on a backend: every parameter point set up once, one warm-up sample each, then
// `repeat` rounds that take one sample of every point in turn. Interleaving the points spreads a slow
// spell of the machine over all of them instead of sinking one point (Firecracker's A/B runs interleave
// for the same reason).

import type { Backend } from '../backend.ts'
import type { RunInfo } from '../results.ts'
import { pointsOf, type BenchContext, type Benchmark, type Params, type Sampler } from './benchmark.ts'
import type { BenchMetric, BenchResult, Clock } from './result.ts'

export interface BenchOptions {
  repeat: number
  clock: Clock
  /** Self-tests: every measured interval is made this fraction longer by spinning (0.3 = 30%). */
  plantSlowdown?: number
}

function now(clock: Clock): number {
  if (clock === 'wall') return performance.now()
  const { user, system } = process.cpuUsage()
  return (user + system) / 1000
}

function spin(ms: number): void {
  const until = performance.now() + ms
  while (performance.now() < until) {
    // burn the planted slowdown
  }
}

export function benchContext(kvm: Backend, o: BenchOptions): BenchContext {
  return {
    kvm,
    clock: o.clock,
    async measure(fn) {
      const start = now(o.clock)
      await fn()
      const t = now(o.clock) - start
      if (o.plantSlowdown) {
        // A 30% slowdown of a rate: each interval takes 1/0.7 as long. Spinning makes it real on both clocks.
        spin(t * (1 / (1 - o.plantSlowdown) - 1))
      }
      return now(o.clock) - start
    },
  }
}

export async function runBenchmarks(kvm: Backend, benchmarks: readonly Benchmark[], runInfo: RunInfo, o: BenchOptions): Promise<BenchResult> {
  const ctx = benchContext(kvm, o)
  const points: { b: Benchmark; params: Params; metric: BenchMetric; sampler?: Sampler }[] = []
  for (const b of benchmarks) {
    const why = (await b.unmet?.(kvm)) ?? undefined
    for (const params of pointsOf(b)) {
      const metric: BenchMetric = { benchmark: b.name, metric: b.metric, unit: b.unit, higherIsBetter: b.higherIsBetter, x: b.x.name, params, samples: [] }
      const whyHere = why ?? (await b.unmetAt?.(kvm, params))
      if (whyHere !== undefined) metric.skipped = whyHere
      points.push({ b, params, metric })
    }
  }
  try {
    for (const p of points) {
      if (p.metric.skipped !== undefined) continue
      p.sampler = await p.b.setup(ctx, p.params)
      await p.sampler.sample() // warm-up: JIT, page faults, caches
    }
    for (let round = 0; round < o.repeat; round++) {
      for (const p of points) if (p.sampler !== undefined) p.metric.samples.push(await p.sampler.sample())
    }
  } finally {
    for (const p of points) await p.sampler?.close()
  }
  return { kind: 'kvmconf-bench', version: 1, runInfo, clock: o.clock, repeat: o.repeat, metrics: points.map((p) => p.metric) }
}
