// Property of KVM Userfault exits (upstream-selftests.md §F.3): a vCPU access exits iff the page's bit is
// set and KVM has not mapped the page, and the exit names the page (gpa page aligned, size one page,
// flags exactly USERFAULT on shared memory). Also bit n is gfn base + n. The model is a set of bits and
// a set of pages KVM mapped: an access that does not exit maps its page; a resolved exit (bit cleared,
// vCPU re-entered) maps it too; turning KVM_MEM_USERFAULT off and on zaps the slot. Accesses are reads,
// so a mapping is never upgraded. Gated on the userfault probe. fast-check prints the seed and path.

import fc from 'fast-check'
import type { VcpuExit } from '../../harness/backend.ts'
import { requires } from '../../harness/gating.ts'
import type { GuestStep } from '../../harness/guest-program.ts'
import { describeExit, getUcall, guestSync } from '../../harness/kvm-util/ucall.ts'
import { userfaultSlot } from '../../harness/kvm-util/userfault.ts'
import { describe, expect, test } from '../../harness/test.ts'
import { KVM_MEM_USERFAULT, KVM_MEMORY_EXIT_FLAG_USERFAULT } from '../../harness/uapi/series.ts'
import { hex } from '../../harness/hex.ts'

const SLOT = 10
const GPA = 0xc000_0000n
const NPAGES = 70 // two bitmap words
const PAGE = 4096n

type Action = { op: 'set' | 'clear' | 'touch'; page: number } | { op: 'toggle' }
// Few pages, so that sequences revisit them; 63, 64 and 69 cross the bitmap's word boundary.
const pageArb = fc.constantFrom(0, 1, 63, 64, 69)
const actionArb: fc.Arbitrary<Action> = fc.oneof(
  fc.record({ op: fc.constantFrom('set' as const, 'clear' as const, 'touch' as const), page: pageArb }),
  { arbitrary: fc.record({ op: fc.constant('touch' as const), page: pageArb }), weight: 2 },
  fc.constant({ op: 'toggle' as const }),
)

function syncOf(exit: VcpuExit): number | undefined {
  const u = getUcall(exit)
  return u?.cmd === 'sync' ? u.value : undefined
}

describe('properties: KVM Userfault exits', () => {
  test('an access exits iff its bit is set and KVM has not mapped the page', async ({ kvm, skip }) => {
    await requires({ kvm, skip }, { userfault: true }, { feature: 'vcpu' })
    await fc.assert(
      fc.asyncProperty(fc.array(actionArb, { minLength: 1, maxLength: 16 }), async (actions) => {
        const vm = await kvm.createVm()
        try {
          const s = await userfaultSlot(kvm, vm, { slot: SLOT, gpa: GPA, npages: NPAGES })
          await s.set(KVM_MEM_USERFAULT)
          const steps: GuestStep[] = []
          actions.forEach((a, i) => {
            if (a.op === 'touch') steps.push({ op: 'read', gva: s.pageGpa(a.page) + 8n }, guestSync(i))
          })
          const vcpu = await vm.createVcpu(0)
          await vcpu.loadProgram({ steps: steps.length > 0 ? steps : [guestSync(0)] })
          const bits = new Set<number>()
          const mapped = new Set<number>()
          for (const [i, a] of actions.entries()) {
            if (a.op === 'set') {
              await s.bitmap.set(a.page)
              bits.add(a.page)
            } else if (a.op === 'clear') {
              await s.bitmap.clear(a.page)
              bits.delete(a.page)
            } else if (a.op === 'toggle') {
              await s.set(0)
              await s.set(KVM_MEM_USERFAULT)
              mapped.clear()
            } else {
              const what = `action ${i}: read of page ${a.page} (bit ${bits.has(a.page) ? 'set' : 'clear'}, ` +
                `${mapped.has(a.page) ? 'mapped' : 'not mapped'})`
              let exit = await vcpu.run({ timeoutMs: 10_000 })
              if (bits.has(a.page) && !mapped.has(a.page)) {
                const gpa = GPA + BigInt(a.page) * PAGE
                if (exit.kind !== 'memory_fault') expect.fail(`${what}: expected a userfault exit for ${hex(gpa)}, got ${describeExit(exit)}`)
                expect(exit, what).toEqual({ kind: 'memory_fault', errno: 'EFAULT', flags: KVM_MEMORY_EXIT_FLAG_USERFAULT, gpa, size: PAGE })
                await s.bitmap.clear(a.page) // resolve: the memory is there, clear the bit and re-enter
                bits.delete(a.page)
                exit = await vcpu.run({ timeoutMs: 10_000 })
              }
              expect(syncOf(exit), `${what}: expected GUEST_SYNC(${i}), got ${describeExit(exit)}`).toBe(i)
              mapped.add(a.page)
            }
          }
        } finally {
          await vm.close()
        }
      }),
      { numRuns: 60 },
    )
  })
})
