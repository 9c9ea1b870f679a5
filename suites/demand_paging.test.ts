// Port of tools/testing/selftests/kvm/demand_paging_test.c (upstream-selftests.md §A, §H cases 1-10),
// with the KVM Userfault series' -k (§A.3). Each test is one command line of the selftest, run through
// Backend.runDemandPaging with two vCPUs and 2 MiB each (upstream: 1 GiB per vCPU; `kvmconf
// demand-paging` keeps that default). Upstream checks nothing but that every vCPU reached GUEST_SYNC;
// these tests also check what the run did:
//   - every vCPU finished its pass, and every guest page starts with the guest's u64 afterwards;
//   - with -u, every unit of the region (demand_paging_size) was resolved exactly once: a second
//     resolution fails with EEXIST (with -o too, where vCPUs fault on the same pages), each fault a
//     reader read was resolved or found resolved, and each such EEXIST was followed by UFFDIO_WAKE;
//   - sampled pages read back as the guest's 0x0123456789ABCDEF followed by what the handler copied
//     (0xAB), or by zeros without a handler;
//   - with -k, the first touch of each page exited exactly once with a page-aligned gpa, size 4096 and
//     exactly KVM_MEMORY_EXIT_FLAG_USERFAULT.

import { availableParallelism } from 'node:os'

import type { Backing } from '../harness/backend.ts'
import type { DemandPagingConfig, DemandPagingResult } from '../harness/demand-paging-types.ts'
import { requires, requireThat, type GateContext } from '../harness/gating.ts'
import {
  backingPageSize, backingUnavailable, expectedFillByte, kvmUserfaultRefusal, resolveDemandPagingConfig, runDemandPaging,
} from '../harness/kvm-util/demand-paging.ts'
import { MEMSTRESS_WRITE_VALUE } from '../harness/kvm-util/memstress.ts'
import { describeExit } from '../harness/kvm-util/ucall.ts'
import { describe, expect, test } from '../harness/test.ts'

const MiB = 1n << 20n
/** Every case: -v 2 -b 2M unless its command line says otherwise. */
const SMALL: DemandPagingConfig = { vcpus: 2, vcpuMemoryBytes: 2n * MiB, samplePages: 16, timeoutMs: 20_000 }

/** What a case needs before it runs; a missing piece skips it with the reason. */
async function gate(t: GateContext, config: DemandPagingConfig): Promise<void> {
  await requires(t, { feature: 'demand-paging' })
  const info = await t.kvm.info()
  const why = backingUnavailable(info, config.backing ?? 'anonymous')
  requireThat(t, why === undefined, why ?? '')
  if (config.kvmUserfault) {
    // TEST_REQUIRE(KVM_CAP_USERFAULT), asked of KVM_SET_USER_MEMORY_REGION2 itself (the cap's number is
    // series-specific, §0.1).
    const refusal = await kvmUserfaultRefusal(t.kvm)
    requireThat(t, refusal === null, refusal?.message ?? '')
  }
  if (config.pinning) {
    const needed = Math.max(...config.pinning.vcpus, config.pinning.main ?? 0) + 1
    requireThat(t, availableParallelism() >= needed, `-c needs ${needed} host CPUs, this host has ${availableParallelism()}`)
  }
}

/** Runs one command line and checks everything the run reports (the header's list). */
async function demandPagingTest(t: GateContext, overrides: DemandPagingConfig): Promise<DemandPagingResult> {
  const config = { ...SMALL, ...overrides }
  await gate(t, config)
  const r = await runDemandPaging(t.kvm, config)
  const resolved = resolveDemandPagingConfig(config, (await t.kvm.info()).pageSize)

  // Every vCPU completed its pass with GUEST_SYNC (upstream's only check).
  for (const v of r.vcpus) {
    expect(v.outcome.kind, `vCPU ${v.id}: ${v.outcome.kind === 'exit' ? describeExit(v.outcome.exit) : ''}`).toBe('synced')
    expect(v.rate).toBeGreaterThan(0)
  }
  expect(r.vcpus).toHaveLength(resolved.vcpus)
  expect(r.elapsedNs).toBeGreaterThan(0n)
  expect(r.overallRate).toBeCloseTo(r.perVcpuRate * resolved.vcpus)
  expect(r.pagesWithoutGuestWrite, 'guest pages without the guest u64').toBe(0)

  // The guest saw exactly what the handler copied.
  const fill = expectedFillByte(resolved)
  expect(r.samples.length).toBeGreaterThanOrEqual(Math.min(resolved.samplePages, 2))
  for (const s of r.samples) {
    const view = new DataView(s.bytes.buffer, s.bytes.byteOffset, s.bytes.byteLength)
    expect(view.getBigUint64(0, true), `gpa 0x${s.gpa.toString(16)}: the guest's u64`).toBe(MEMSTRESS_WRITE_VALUE)
    const wrong = s.bytes.subarray(8).findIndex((b) => b !== fill)
    expect(wrong, `gpa 0x${s.gpa.toString(16)}: byte ${wrong + 8} is not 0x${fill.toString(16)}`).toBe(-1)
  }

  const regionPages = Number(r.region.size / BigInt(r.region.guestPageSize))
  if (resolved.uffdMode === null) {
    expect(r.uffd).toBeNull()
  } else {
    const u = r.uffd!
    expect(u.uffds).toBe(resolved.singleUffd ? 1 : resolved.vcpus)
    expect(u.unitBytes).toBe(backingPageSize(resolved.backing, (await t.kvm.info()).pageSize))
    expect(u.units).toBe(Number(r.region.size / BigInt(u.unitBytes)))
    // Each unit resolved exactly once: EEXIST dedups concurrent resolvers, with -o as well.
    expect({ once: u.unitsResolvedOnce, more: u.unitsResolvedMoreThanOnce, never: u.unitsNeverResolved })
      .toEqual({ once: u.units, more: 0, never: 0 })
    expect(u.resolved).toBe(u.units)
    if (!resolved.kvmUserfault) {
      // Every fault read was answered: resolved, or found resolved (EEXIST) and its waiter woken.
      expect(u.faults).toBe(u.resolved + u.eexist)
      expect(u.wakes).toBe(u.eexist)
    }
  }

  if (!resolved.kvmUserfault) {
    expect(r.kvmUserfault).toBeNull()
  } else {
    const k = r.kvmUserfault!
    expect(k.violations, 'exits that break gpa/size/flags').toEqual([])
    expect(k.violationCount).toBe(0)
    expect(k.pagesWithExit, 'pages whose first touch exited').toBe(regionPages)
    if (!resolved.overlap) {
      expect(k.pagesWithMoreThanOneExit).toBe(0)
      expect(k.exits).toBe(regionPages)
      for (const v of r.vcpus) expect(v.userfaultExits, `vCPU ${v.id}`).toBe(v.pages)
    }
  }
  return r
}

const shmem: Backing = 'shmem'

describe('demand_paging_test', () => {
  test('(no uffd)', async ({ kvm, skip }) => {
    await demandPagingTest({ kvm, skip }, {})
  })

  test('-u MISSING', async ({ kvm, skip }) => {
    await demandPagingTest({ kvm, skip }, { uffdMode: 'MISSING' })
  })

  test('-u MINOR -s shmem', async ({ kvm, skip }) => {
    await demandPagingTest({ kvm, skip }, { uffdMode: 'MINOR', backing: shmem })
  })

  test('-u MISSING -a', async ({ kvm, skip }) => {
    await demandPagingTest({ kvm, skip }, { uffdMode: 'MISSING', singleUffd: true })
  })

  // The series' prefault fix: with -a upstream filled only vCPU 0's slice, so vCPU 1's pages would have
  // faulted as MISSING (never registered) and read as zeros behind the guest's u64.
  test('-u MINOR -s shmem -a', async ({ kvm, skip }) => {
    await demandPagingTest({ kvm, skip }, { uffdMode: 'MINOR', backing: shmem, singleUffd: true })
  })

  test('-u MISSING -r 2', async ({ kvm, skip }) => {
    await demandPagingTest({ kvm, skip }, { uffdMode: 'MISSING', readersPerUffd: 2 })
  })

  test('-u MISSING -d 10', async ({ kvm, skip }) => {
    await demandPagingTest({ kvm, skip }, { uffdMode: 'MISSING', uffdDelayUs: 10 })
  })

  test('-u MISSING -o', async ({ kvm, skip }) => {
    const r = await demandPagingTest({ kvm, skip }, { uffdMode: 'MISSING', overlap: true })
    for (const v of r.vcpus) expect(v.pages, 'with -o every vCPU touches the whole region').toBe(Number(r.region.size / 4096n))
  })

  test('-u MISSING -c 0,1', async ({ kvm, skip }) => {
    await demandPagingTest({ kvm, skip }, { uffdMode: 'MISSING', pinning: { vcpus: [0, 1] } })
  })

  // A unit is the backing's page: one UFFDIO_COPY of 2 MiB resolves 512 guest pages.
  test('-u MISSING -s anonymous_thp', async ({ kvm, skip }) => {
    await demandPagingTest({ kvm, skip }, { uffdMode: 'MISSING', backing: 'anonymous_thp' })
  })

  test('-k', async ({ kvm, skip }) => {
    await demandPagingTest({ kvm, skip }, { kvmUserfault: true })
  })

  test('-k -u MISSING', async ({ kvm, skip }) => {
    await demandPagingTest({ kvm, skip }, { kvmUserfault: true, uffdMode: 'MISSING' })
  })

  test('-k -u MINOR -s shmem -a -r 2', async ({ kvm, skip }) => {
    await demandPagingTest({ kvm, skip }, {
      kvmUserfault: true, uffdMode: 'MINOR', backing: shmem, singleUffd: true, readersPerUffd: 2,
    })
  })
})
