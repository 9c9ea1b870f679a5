// The Mann-Whitney U rank test (Wilcoxon rank-sum), two-sided, by the normal approximation with the
// tie correction and a continuity correction: what scipy.stats.mannwhitneyu(method="asymptotic")
// computes, and what Firecracker's A/B tool (tools/ab_test.py) asks of a performance change before it
// calls it a regression. It assumes nothing about the distribution of the samples, which for timings on
// a shared machine (long tails, bimodal when a neighbour runs) is the point.

export interface MannWhitney {
  /** U of the first sample: how many (x, y) pairs have x > y, ties counting one half. */
  u1: number
  /** The z statistic after the continuity correction (0 when every value ties). */
  z: number
  /** Two-sided p-value. */
  p: number
}

/** Ranks of `values` (1-based), ties given the average of the ranks they span; and Σ(t³ - t) over ties. */
export function rank(values: readonly number[]): { ranks: number[]; tieTerm: number } {
  const order = values.map((v, i) => ({ v, i })).sort((a, b) => a.v - b.v)
  const ranks = new Array<number>(values.length)
  let tieTerm = 0
  for (let start = 0; start < order.length; ) {
    let end = start
    while (end + 1 < order.length && (order[end + 1] as { v: number }).v === (order[start] as { v: number }).v) end++
    const avg = (start + end) / 2 + 1
    for (let k = start; k <= end; k++) ranks[(order[k] as { i: number }).i] = avg
    const t = end - start + 1
    tieTerm += t * t * t - t
    start = end + 1
  }
  return { ranks, tieTerm }
}

/** erfc(x) by Numerical Recipes' Chebyshev fit (3rd ed., Erf::erfccheb): about 1e-15 relative error. */
export function erfc(x: number): number {
  const z = Math.abs(x)
  const t = 2 / (2 + z)
  const ty = 4 * t - 2
  const cof = [
    -1.3026537197817094, 6.4196979235649026e-1, 1.9476473204185836e-2, -9.561514786808631e-3, -9.46595344482036e-4,
    3.66839497852761e-4, 4.2523324806907e-5, -2.0278578112534e-5, -1.624290004647e-6, 1.30365583558e-6, 1.5626441722e-8,
    -8.5238095915e-8, 6.529054439e-9, 5.059343495e-9, -9.91364156e-10, -2.27365122e-10, 9.6467911e-11, 2.394038e-12,
    -6.886027e-12, 8.94487e-13, 3.13092e-13, -1.12708e-13, 3.81e-16, 7.106e-15, -1.523e-15, -9.4e-17, 1.21e-16, -2.8e-17,
  ]
  let d = 0
  let dd = 0
  for (let j = cof.length - 1; j > 0; j--) {
    const tmp = d
    d = ty * d - dd + (cof[j] as number)
    dd = tmp
  }
  const value = t * Math.exp(-z * z + 0.5 * ((cof[0] as number) + ty * d) - dd)
  return x >= 0 ? value : 2 - value
}

/** P(Z > z) for a standard normal Z. */
export function normalSf(z: number): number {
  return 0.5 * erfc(z / Math.SQRT2)
}

export function mannWhitneyU(x: readonly number[], y: readonly number[]): MannWhitney {
  const n1 = x.length
  const n2 = y.length
  if (n1 === 0 || n2 === 0) throw new Error('mannWhitneyU: both samples need at least one value')
  const { ranks, tieTerm } = rank([...x, ...y])
  const r1 = ranks.slice(0, n1).reduce((s, r) => s + r, 0)
  const u1 = r1 - (n1 * (n1 + 1)) / 2
  const n = n1 + n2
  const mean = (n1 * n2) / 2
  const variance = ((n1 * n2) / 12) * (n + 1 - tieTerm / (n * (n - 1)))
  if (variance <= 0) return { u1, z: 0, p: 1 }
  // The continuity correction moves U half a step toward the mean.
  const diff = u1 - mean
  const z = (diff - 0.5 * Math.sign(diff)) / Math.sqrt(variance)
  return { u1, z, p: Math.min(1, 2 * normalSf(Math.abs(z))) }
}
