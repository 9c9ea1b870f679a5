// A/B comparison of two bench results, as Firecracker's tools/ab_test.py decides: a metric regressed
// when the Mann-Whitney U test finds the two sample sets differ (p below `alpha`, 0.01) AND the median
// moved the wrong way by more than `threshold` (10%). Either alone is noise: a tiny shift can be
// significant with many samples, a large one can be chance with few.

import { mannWhitneyU } from './mann-whitney.ts'
import { median, metricKey, type BenchMetric, type BenchResult } from './result.ts'

export type Verdict = 'regression' | 'improvement' | 'unchanged' | 'missing' | 'new' | 'skipped'

export interface MetricComparison {
  key: string
  unit: string
  baseMedian: number
  candMedian: number
  /** (cand - base) / base of the medians. */
  change: number
  p: number
  verdict: Verdict
}

export interface AbOptions {
  alpha: number
  threshold: number
}

export const AB_DEFAULTS: AbOptions = { alpha: 0.01, threshold: 0.1 }

export function compareMetric(base: BenchMetric, cand: BenchMetric, o: AbOptions = AB_DEFAULTS): MetricComparison {
  const key = metricKey(base)
  if (base.samples.length === 0 || cand.samples.length === 0) {
    return { key, unit: base.unit, baseMedian: median(base.samples), candMedian: median(cand.samples), change: NaN, p: NaN, verdict: 'skipped' }
  }
  const baseMedian = median(base.samples)
  const candMedian = median(cand.samples)
  const change = (candMedian - baseMedian) / baseMedian
  const { p } = mannWhitneyU(base.samples, cand.samples)
  const worse = base.higherIsBetter ? change < 0 : change > 0
  const significant = p < o.alpha && Math.abs(change) > o.threshold
  const verdict: Verdict = !significant ? 'unchanged' : worse ? 'regression' : 'improvement'
  return { key, unit: base.unit, baseMedian, candMedian, change, p, verdict }
}

export function compareBench(base: BenchResult, cand: BenchResult, o: AbOptions = AB_DEFAULTS): MetricComparison[] {
  const candByKey = new Map(cand.metrics.map((m) => [metricKey(m), m]))
  const out: MetricComparison[] = []
  for (const b of base.metrics) {
    const c = candByKey.get(metricKey(b))
    candByKey.delete(metricKey(b))
    if (c === undefined) out.push({ key: metricKey(b), unit: b.unit, baseMedian: median(b.samples), candMedian: NaN, change: NaN, p: NaN, verdict: 'missing' })
    else out.push(compareMetric(b, c, o))
  }
  for (const c of candByKey.values()) out.push({ key: metricKey(c), unit: c.unit, baseMedian: NaN, candMedian: median(c.samples), change: NaN, p: NaN, verdict: 'new' })
  return out
}
