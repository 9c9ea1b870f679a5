// Property of KVM_PRE_FAULT_MEMORY (upstream-selftests.md §E.1): every call either makes progress or
// fails, never both: `(size < prev) XOR (ret < 0)`, and what is left is the rest of the range asked for
// (gpa + size is unchanged). Ranges are arbitrary: inside, across and outside a memslot, page-aligned or
// not, size 0 or not. Gated on KVM_CAP_PRE_FAULT_MEMORY. fast-check prints the seed and path of a failure.

import fc from 'fast-check'
import type { PreFaultResult } from '../../harness/backend.ts'
import { requires } from '../../harness/gating.ts'
import { guestDone } from '../../harness/kvm-util/ucall.ts'
import { describe, expect, test } from '../../harness/test.ts'
import { KVM_CAP_PRE_FAULT_MEMORY } from '../../harness/uapi/kvm.ts'
import { hex } from '../../harness/hex.ts'

const PAGE = 4096n
const SLOT = 10
const NPAGES = 16n
const BASE = 0x4000_0000n
const describeResult = (r: PreFaultResult) =>
  `${r.ok ? 'ret 0' : `ret -1 (${r.error.code})`}, gpa ${hex(r.gpa)}, size ${hex(r.size)}`

/** A range around the slot [BASE, BASE + NPAGES pages): page offsets from 4 before to 4 after it, sometimes unaligned. */
const rangeArb = fc.record({
  page: fc.integer({ min: -4, max: Number(NPAGES) + 4 }),
  pages: fc.integer({ min: 0, max: Number(NPAGES) + 4 }),
  gpaSkew: fc.oneof({ arbitrary: fc.constant(0), weight: 4 }, { arbitrary: fc.integer({ min: 1, max: 4095 }), weight: 1 }),
  sizeSkew: fc.oneof({ arbitrary: fc.constant(0), weight: 4 }, { arbitrary: fc.integer({ min: 1, max: 4095 }), weight: 1 }),
}).map(({ page, pages, gpaSkew, sizeSkew }) => ({
  gpa: BASE + BigInt(page) * PAGE + BigInt(gpaSkew),
  size: BigInt(pages) * PAGE + BigInt(sizeSkew),
}))

describe('properties: KVM_PRE_FAULT_MEMORY', () => {
  test('each call makes progress or fails, never both, and leaves the rest of the range', async ({ kvm, skip }) => {
    await requires({ kvm, skip }, { cap: KVM_CAP_PRE_FAULT_MEMORY }, { feature: 'vcpu' })
    const vm = await kvm.createVm()
    const vcpu = await vm.createVcpu(0)
    await vcpu.loadProgram({ steps: [guestDone()] })
    const mem = await kvm.mmap({ size: NPAGES * PAGE, backing: 'anonymous' })
    await vm.setUserMemoryRegion({ slot: SLOT, flags: 0, guestPhysAddr: BASE, memorySize: NPAGES * PAGE, userspaceAddr: mem.addr })
    await fc.assert(
      fc.asyncProperty(rangeArb, async (start) => {
        let range = start
        // Reissue while it makes progress (as upstream's loop does), at most a few times.
        for (let call = 0; call < 4 && range.size !== 0n; call++) {
          const r = await vcpu.preFaultMemory(range)
          const what = `KVM_PRE_FAULT_MEMORY [${hex(range.gpa)}, +${hex(range.size)}) gave ${describeResult(r)}`
          expect(r.size < range.size !== !r.ok, `${what}: (size < prev) XOR (ret < 0)`).toBe(true)
          expect(r.gpa + r.size, `${what}: gpa + size`).toBe(range.gpa + range.size)
          if (!r.ok) break
          range = { gpa: r.gpa, size: r.size }
        }
      }),
      { numRuns: 60 },
    )
  })
})
