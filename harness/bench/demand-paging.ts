// demand_paging: demand_paging_test's overall rate, run inside the backend (runDemandPaging), against
// the vCPU count, one series per way of resolving faults: userfaultfd MISSING (UFFDIO_COPY), MINOR
// (UFFDIO_CONTINUE over shmem), KVM Userfault alone, and KVM Userfault with userfaultfd MISSING. This
// is the plot the KVM Userfault series' cover letters draw. The rate is the backend's own measurement
// (CLOCK_MONOTONIC around the vCPUs' pass), so a self-test's planted slowdown does not apply to it.

import type { DemandPagingConfig } from '../demand-paging-types.ts'
import { kvmUserfaultRefusal, runDemandPaging } from '../kvm-util/demand-paging.ts'
import type { Benchmark } from './benchmark.ts'

/** Memory demand-paged per vCPU in one sample: 4096 pages, a sample well under a second natively. */
const PER_VCPU_BYTES = 16n << 20n

const MODES: Record<string, DemandPagingConfig> = {
  'uffd MISSING': { uffdMode: 'MISSING' },
  'uffd MINOR': { uffdMode: 'MINOR', backing: 'shmem' },
  'KVM Userfault': { kvmUserfault: true },
  'KVM Userfault + uffd MISSING': { kvmUserfault: true, uffdMode: 'MISSING' },
}

const modeOf = (mode: string | number | undefined): DemandPagingConfig => {
  const config = MODES[String(mode)]
  if (config === undefined) throw new RangeError(`demand_paging: unknown mode ${String(mode)}`)
  return config
}

export const demandPaging: Benchmark = {
  name: 'demand_paging',
  description: 'demand_paging_test inside the backend: overall demand paging rate per vCPU count and resolution mode',
  metric: 'overall demand paging rate',
  unit: 'pages/s',
  higherIsBetter: true,
  x: { name: 'vcpus', values: [1, 2] },
  series: { mode: Object.keys(MODES) },
  async unmet(kvm) {
    const info = await kvm.info()
    return info.features.includes('demand-paging') ? undefined : `the ${kvm.name} backend cannot do 'demand-paging' yet`
  },
  async unmetAt(kvm, params) {
    if (!modeOf(params.mode).kvmUserfault) return undefined
    return (await kvmUserfaultRefusal(kvm))?.message
  },
  async setup(ctx, params) {
    const config: DemandPagingConfig = {
      ...modeOf(params.mode),
      vcpus: Number(params.vcpus),
      vcpuMemoryBytes: PER_VCPU_BYTES,
      timeoutMs: 60_000,
    }
    return {
      sample: async () => (await runDemandPaging(ctx.kvm, config)).overallRate,
      close: async () => {},
    }
  },
}
