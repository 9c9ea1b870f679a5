// Plots of bench metrics as hand-written SVG: one plot per benchmark and metric, the metric against
// its x parameter, one line per series through the medians, every sample as a dot and a bar from the
// lowest to the highest sample. X positions are evenly spaced and labelled with the parameter's values
// (vCPU counts and slot counts are small sets of unevenly spaced numbers); y starts at zero.

import { median, seriesOf, type BenchMetric, type BenchResult } from '../bench/result.ts'
import { escapeXml } from './junit.ts'

const W = 840
/** The plot's own height; each note about a series that was not measured adds a line below it. */
const PLOT_H = 400
const NOTE_LINE = 16
/** Room for legend labels such as `mode=KVM Userfault + uffd MISSING`. */
const M = { left: 80, right: 320, top: 40, bottom: 60 }
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf']

export interface Plot {
  benchmark: string
  metric: string
  /** A file-name friendly id: `memslot_churn-memslot_create_delete_rate`. */
  id: string
  svg: string
}

/** Round tick values covering [0, max]. */
export function niceTicks(max: number, count = 5): number[] {
  if (!(max > 0)) return [0, 1]
  const raw = max / count
  const mag = 10 ** Math.floor(Math.log10(raw))
  const step = ([1, 2, 2.5, 5, 10].find((s) => s * mag >= raw) ?? 10) * mag
  const ticks: number[] = []
  for (let v = 0; v <= max + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)))
  if ((ticks.at(-1) ?? 0) < max) ticks.push(Number(((ticks.at(-1) ?? 0) + step).toPrecision(12)))
  return ticks
}

function formatNumber(v: number): string {
  if (v === 0) return '0'
  if (Math.abs(v) >= 1e6) return `${Number((v / 1e6).toPrecision(3))}M`
  if (Math.abs(v) >= 1e3) return `${Number((v / 1e3).toPrecision(3))}k`
  return String(Number(v.toPrecision(3)))
}

const fx = (v: number) => v.toFixed(1)

export function plotMetric(metrics: readonly BenchMetric[], title: string): string {
  const first = metrics[0]
  if (first === undefined) throw new Error('plotMetric: no metrics')
  const xName = first.x
  const xValues = [...new Set(metrics.map((m) => m.params[xName]))].sort((a, b) => Number(a) - Number(b))
  const series = [...new Set(metrics.map(seriesOf))]
  const all = metrics.flatMap((m) => m.samples)
  const ticks = niceTicks(Math.max(0, ...all))
  const yMax = ticks.at(-1) ?? 1
  // Series and points that were not measured, each reason once, printed below the plot (not over it).
  const notes = [...new Set(metrics.filter((m) => m.skipped !== undefined).map((m) => m.skipped as string))]
  const measured = new Set(metrics.filter((m) => m.samples.length > 0).map(seriesOf))
  const H = PLOT_H + notes.length * NOTE_LINE
  const plotW = W - M.left - M.right
  const plotH = PLOT_H - M.top - M.bottom
  const pad = 30
  const px = (i: number) => M.left + pad + (xValues.length === 1 ? (plotW - 2 * pad) / 2 : (i / (xValues.length - 1)) * (plotW - 2 * pad))
  const py = (v: number) => M.top + plotH - (v / yMax) * plotH

  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect x="0" y="0" width="${W}" height="${H}" fill="white"/>`,
    `<text x="10" y="22" font-size="13">${escapeXml(title)}</text>`,
  ]
  for (const t of ticks) {
    out.push(`<line x1="${M.left}" y1="${fx(py(t))}" x2="${M.left + plotW}" y2="${fx(py(t))}" stroke="#ddd"/>`)
    out.push(`<text x="${M.left - 6}" y="${fx(py(t) + 4)}" text-anchor="end">${formatNumber(t)}</text>`)
  }
  xValues.forEach((v, i) => out.push(`<text x="${fx(px(i))}" y="${M.top + plotH + 18}" text-anchor="middle">${escapeXml(String(v))}</text>`))
  out.push(`<line x1="${M.left}" y1="${M.top + plotH}" x2="${M.left + plotW}" y2="${M.top + plotH}" stroke="black"/>`)
  out.push(`<line x1="${M.left}" y1="${M.top}" x2="${M.left}" y2="${M.top + plotH}" stroke="black"/>`)
  out.push(`<text x="${M.left + plotW / 2}" y="${PLOT_H - 16}" text-anchor="middle">${escapeXml(xName)}</text>`)
  out.push(`<text x="18" y="${M.top + plotH / 2}" text-anchor="middle" transform="rotate(-90 18 ${M.top + plotH / 2})">${escapeXml(`${first.metric} (${first.unit})`)}</text>`)

  const params = [...new Set(series.filter((s) => s !== 'all').flatMap((s) => s.split(',').map((kv) => kv.split('=')[0] as string)))]
  const singleParam = params.length === 1 && series.every((s) => s.startsWith(`${params[0]}=`) && !s.includes(',')) ? params[0] : undefined
  if (singleParam !== undefined) out.push(`<text x="${W - M.right + 16}" y="${M.top - 6}" font-weight="bold">${escapeXml(singleParam)}</text>`)
  series.forEach((s, si) => {
    const color = COLORS[si % COLORS.length] as string
    const points: string[] = []
    xValues.forEach((xv, i) => {
      const m = metrics.find((k) => seriesOf(k) === s && k.params[xName] === xv)
      if (m === undefined || m.samples.length === 0) return
      const x = px(i)
      const lo = Math.min(...m.samples)
      const hi = Math.max(...m.samples)
      out.push(`<line class="range" x1="${fx(x)}" y1="${fx(py(lo))}" x2="${fx(x)}" y2="${fx(py(hi))}" stroke="${color}" stroke-width="2" opacity="0.5"/>`)
      for (const v of m.samples) out.push(`<circle class="sample" cx="${fx(x + (si - (series.length - 1) / 2) * 6)}" cy="${fx(py(v))}" r="2" fill="${color}" opacity="0.5"/>`)
      points.push(`${fx(x)},${fx(py(median(m.samples)))}`)
    })
    if (points.length > 0) out.push(`<polyline class="median" points="${points.join(' ')}" fill="none" stroke="${color}" stroke-width="2"/>`)
    const ly = M.top + 10 + si * 18
    // With one series parameter its name heads the legend once, and each label is just its value.
    const value = singleParam === undefined ? s : s.slice(singleParam.length + 1)
    const label = (s === 'all' ? 'median' : value) + (measured.has(s) ? '' : ' (not measured)')
    const dash = measured.has(s) ? '' : ' stroke-dasharray="3 3"'
    out.push(`<line x1="${W - M.right + 16}" y1="${ly}" x2="${W - M.right + 36}" y2="${ly}" stroke="${color}" stroke-width="2"${dash}/>`)
    out.push(`<text x="${W - M.right + 42}" y="${ly + 4}">${escapeXml(label)}</text>`)
  })
  notes.forEach((note, i) => {
    out.push(`<text class="not-measured" x="10" y="${PLOT_H + i * NOTE_LINE}" fill="#a00">${escapeXml(`not measured: ${note}`)}</text>`)
  })
  out.push('</svg>')
  return out.join('\n') + '\n'
}

/** One plot per benchmark and metric of a bench result. */
export function plotBench(result: BenchResult): Plot[] {
  const groups = new Map<string, BenchMetric[]>()
  for (const m of result.metrics) {
    const key = `${m.benchmark}\u0000${m.metric}`
    groups.set(key, [...(groups.get(key) ?? []), m])
  }
  return [...groups.values()].map((ms) => {
    const m = ms[0] as BenchMetric
    const title = `${m.benchmark}: ${m.metric} on ${result.runInfo.backend} (${result.clock} clock, ${result.repeat} samples)`
    const id = `${m.benchmark}-${m.metric}`.replace(/[^A-Za-z0-9_-]+/g, '_')
    return { benchmark: m.benchmark, metric: m.metric, id, svg: plotMetric(ms, title) }
  })
}
