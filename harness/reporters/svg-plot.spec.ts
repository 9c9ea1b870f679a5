import { describe, expect, test } from 'vitest'
import type { BenchMetric } from '../bench/result.ts'
import { plotMetric } from './svg-plot.ts'

const metric = (mode: string, vcpus: number, samples: number[], skipped?: string): BenchMetric => ({
  benchmark: 'demand_paging', metric: 'overall demand paging rate', unit: 'pages/s', higherIsBetter: true,
  x: 'vcpus', params: { vcpus, mode }, samples, ...(skipped === undefined ? {} : { skipped }),
})

describe('plotMetric', () => {
  const why = 'this kernel lacks KVM Userfault (KVM_MEM_USERFAULT refused by KVM_SET_USER_MEMORY_REGION2: EINVAL)'
  const svg = plotMetric(
    [
      metric('uffd MISSING', 1, [100, 120]),
      metric('uffd MISSING', 2, [200, 210]),
      metric('KVM Userfault', 1, [], why),
      metric('KVM Userfault', 2, [], why),
    ],
    'demand_paging on native',
  )

  test('a series that was not measured says so in the legend, and why below the plot, once', () => {
    expect(svg).toContain('>KVM Userfault (not measured)</text>')
    expect(svg.split(`not measured: ${why}`).length - 1).toBe(1)
    const noteY = Number(/class="not-measured" x="10" y="(\d+)"/.exec(svg)?.[1])
    const height = Number(/<svg [^>]*height="(\d+)"/.exec(svg)?.[1])
    expect(noteY, 'the note sits below the 400-pixel plot').toBeGreaterThanOrEqual(400)
    expect(height, 'the picture grows to hold the note').toBeGreaterThan(noteY)
  })

  test('one series parameter heads the legend once; labels are its values', () => {
    expect(svg).toContain('font-weight="bold">mode</text>')
    expect(svg).toContain('>uffd MISSING</text>')
    expect(svg).not.toContain('mode=uffd MISSING')
  })

  test('medians are joined per series; the unmeasured series draws no line', () => {
    expect(svg.match(/class="median"/g)).toHaveLength(1)
  })
})
