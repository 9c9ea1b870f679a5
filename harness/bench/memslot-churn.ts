// memslot_churn: how fast KVM creates and deletes one memslot while N others exist, the operation a
// VMM repeats when it toggles dirty logging or remaps regions around a live migration (upstream's
// set_memory_region_test and memslot_perf_test time related paths). One pair is
// KVM_SET_USER_MEMORY_REGION creating a 1-page slot and the same call with size 0 deleting it.

import type { HostMapping, Vm } from '../backend.ts'
import { KVM_CAP_NR_MEMSLOTS } from '../uapi/kvm.ts'
import type { Benchmark } from './benchmark.ts'

const PAGE = 4096
/** Each sample lasts about this long, so that a sample is many pairs and a run stays short. */
const SAMPLE_MS = 25

export const memslotChurn: Benchmark = {
  name: 'memslot_churn',
  description: 'KVM_SET_USER_MEMORY_REGION create + delete of one 1-page slot, with N slots already present',
  metric: 'memslot create+delete rate',
  unit: 'pairs/s',
  higherIsBetter: true,
  x: { name: 'slots', values: [1, 64, 512, 2048] },
  async unmet(kvm) {
    const nr = await kvm.checkExtension(KVM_CAP_NR_MEMSLOTS)
    return nr < 2049 ? `KVM_CAP_NR_MEMSLOTS = ${nr}, the benchmark needs 2049` : undefined
  },
  async setup(ctx, params) {
    const slots = Number(params.slots)
    const vm: Vm = await ctx.kvm.createVm()
    const mem: HostMapping = await ctx.kvm.mmap({ size: (slots + 1) * PAGE, backing: 'anonymous' })
    for (let i = 0; i < slots; i++) {
      await vm.setUserMemoryRegion({ slot: i, flags: 0, guestPhysAddr: i * PAGE, memorySize: PAGE, userspaceAddr: mem.addr + BigInt(i * PAGE) })
    }
    const extra = { slot: slots, flags: 0, guestPhysAddr: slots * PAGE, userspaceAddr: mem.addr + BigInt(slots * PAGE) }
    const pairs = async (n: number) => {
      for (let i = 0; i < n; i++) {
        await vm.setUserMemoryRegion({ ...extra, memorySize: PAGE })
        await vm.setUserMemoryRegion({ ...extra, memorySize: 0 })
      }
    }
    // Calibrate once, so every sample of this point does the same work.
    let batch = 16
    while ((await ctx.measure(() => pairs(batch))) < SAMPLE_MS && batch < 1 << 20) batch *= 2
    return {
      async sample() {
        const ms = await ctx.measure(() => pairs(batch))
        return (batch / ms) * 1000
      },
      async close() {
        await vm.close()
        await mem.close()
      },
    }
  },
}
