// Backend.runDemandPaging on the emulator (demand-paging.ts): each mode's statistics, KVM Userfault exits
// counted once per page, EEXIST with -o, the accounted -d delay, the refusals (bad config, unavailable
// backing, -k on a profile without KVM Userfault) and the deadline.

import { afterEach, describe, expect, test } from 'vitest'
import type { Backend } from '../../harness/backend.ts'
import type { DemandPagingConfig, DemandPagingResult } from '../../harness/demand-paging-types.ts'
import { DemandPagingTimeout, KvmUserfaultUnsupported } from '../../harness/kvm-util/demand-paging.ts'
import { MEMSTRESS_WRITE_VALUE } from '../../harness/kvm-util/memstress.ts'
import { createEmulatorBackend } from './index.ts'

const MiB = 1n << 20n
const PAGE = 4096n
let open: Backend[] = []

afterEach(async () => {
  for (const kvm of open) await kvm.close()
  open = []
})

function emulator(profile?: string): Backend {
  const kvm = createEmulatorBackend({ profile })
  open.push(kvm)
  return kvm
}

async function run(config: DemandPagingConfig, profile?: string): Promise<DemandPagingResult> {
  return emulator(profile).runDemandPaging!({ vcpus: 2, vcpuMemoryBytes: MiB, samplePages: 4, ...config })
}

const regionPages = (r: DemandPagingResult) => Number(r.region.size / PAGE)

function expectComplete(r: DemandPagingResult): void {
  for (const v of r.vcpus) expect(v.outcome.kind).toBe('synced')
  expect(r.pagesWithoutGuestWrite).toBe(0)
  for (const s of r.samples) {
    expect(new DataView(s.bytes.buffer, s.bytes.byteOffset).getBigUint64(0, true)).toBe(MEMSTRESS_WRITE_VALUE)
  }
}

describe('emulator runDemandPaging: statistics per mode', () => {
  test('info() lists demand-paging', async () => {
    expect((await emulator().info()).features).toContain('demand-paging')
  })

  test('no userfaultfd: no stats, pages zero behind the guest u64', async () => {
    const r = await run({})
    expectComplete(r)
    expect(r.uffd).toBeNull()
    expect(r.kvmUserfault).toBeNull()
    expect(r.region.slot).toBe(1)
    for (const s of r.samples) expect(s.bytes.subarray(8).every((b) => b === 0)).toBe(true)
    expect(r.overallRate).toBeCloseTo(r.perVcpuRate * 2)
  })

  test('-u MISSING: one uffd per vCPU, one fault and one UFFDIO_COPY per page', async () => {
    const r = await run({ uffdMode: 'MISSING' })
    expectComplete(r)
    const pages = regionPages(r)
    expect(r.uffd).toMatchObject({
      uffds: 2, unitBytes: 4096, units: pages, faults: pages, resolved: pages, eexist: 0, wakes: 0,
      unitsResolvedOnce: pages, unitsResolvedMoreThanOnce: 0, unitsNeverResolved: 0,
    })
    for (const s of r.samples) expect(s.bytes.subarray(8).every((b) => b === 0xab)).toBe(true)
  })

  test('-u MINOR -s shmem -a -r 2: one uffd, UFFDIO_CONTINUE over the prefilled page cache', async () => {
    const r = await run({ uffdMode: 'MINOR', backing: 'shmem', singleUffd: true, readersPerUffd: 2 })
    expectComplete(r)
    const pages = regionPages(r)
    expect(r.uffd).toMatchObject({ uffds: 1, readersPerUffd: 2, faults: pages, resolved: pages, eexist: 0, unitsResolvedOnce: pages })
    for (const s of r.samples) expect(s.bytes.subarray(8).every((b) => b === 0xab)).toBe(true)
  })

  test('-u MISSING -s anonymous_thp: a unit is 2 MiB, resolved by one fault', async () => {
    const r = await run({ uffdMode: 'MISSING', backing: 'anonymous_thp', vcpuMemoryBytes: 2n * MiB })
    expectComplete(r)
    expect(r.uffd).toMatchObject({ unitBytes: 2 * 1024 * 1024, units: 2, faults: 2, resolved: 2, unitsResolvedOnce: 2 })
  })

  test('-u MISSING -o: every vCPU faults on every page; all but the first resolution are EEXIST, each woken', async () => {
    const r = await run({ uffdMode: 'MISSING', overlap: true, vcpus: 3 })
    expectComplete(r)
    const pages = regionPages(r)
    for (const v of r.vcpus) expect(v.pages).toBe(pages)
    expect(r.uffd).toMatchObject({
      uffds: 1, faults: 3 * pages, resolved: pages, eexist: 2 * pages, wakes: 2 * pages,
      unitsResolvedOnce: pages, unitsResolvedMoreThanOnce: 0,
    })
  })

  test('-d is accounted, not slept: the elapsed time covers every delay of the busiest reader', async () => {
    const r = await run({ uffdMode: 'MISSING', uffdDelayUs: 1000, vcpus: 1 })
    expectComplete(r)
    expect(r.elapsedNs).toBeGreaterThanOrEqual(BigInt(regionPages(r)) * 1_000_000n)
  })

  test('a read pass: no guest-write count', async () => {
    const r = await run({ write: false, uffdMode: 'MISSING' })
    expect(r.pagesWithoutGuestWrite).toBeNull()
    for (const v of r.vcpus) expect(v.outcome.kind).toBe('synced')
  })
})

describe('emulator runDemandPaging: -k (KVM Userfault)', () => {
  test('-k: each page exits once, exactly USERFAULT, page aligned, 4096 bytes; resolved by memcpy', async () => {
    const r = await run({ kvmUserfault: true })
    expectComplete(r)
    const pages = regionPages(r)
    expect(r.kvmUserfault).toEqual({ exits: pages, pagesWithExit: pages, pagesWithMoreThanOneExit: 0, violations: [], violationCount: 0 })
    for (const v of r.vcpus) expect(v.userfaultExits).toBe(v.pages)
    for (const s of r.samples) expect(s.bytes.subarray(8).every((b) => b === 0xab)).toBe(true)
  })

  test('-k -u MISSING: resolved early (UFFDIO_COPY with DONTWAKE), so no userfaultfd message at all', async () => {
    const r = await run({ kvmUserfault: true, uffdMode: 'MISSING' })
    expectComplete(r)
    const pages = regionPages(r)
    expect(r.kvmUserfault?.exits).toBe(pages)
    expect(r.uffd).toMatchObject({ faults: 0, resolved: pages, eexist: 0, unitsResolvedOnce: pages })
  })

  test('-k -u MINOR -s shmem -a -r 2', async () => {
    const r = await run({ kvmUserfault: true, uffdMode: 'MINOR', backing: 'shmem', singleUffd: true, readersPerUffd: 2 })
    expectComplete(r)
    expect(r.kvmUserfault?.pagesWithExit).toBe(regionPages(r))
    expect(r.uffd?.resolved).toBe(regionPages(r))
  })

  test('-k -o: a page exits only until it is mapped, so at most once per vCPU', async () => {
    const r = await run({ kvmUserfault: true, overlap: true })
    expectComplete(r)
    expect(r.kvmUserfault?.pagesWithExit).toBe(regionPages(r))
    expect(r.kvmUserfault?.violationCount).toBe(0)
  })

  test.each(['upstream-6.18', 'pvm-6.18'])('a profile without KVM Userfault (%s) refuses -k', async (profile) => {
    const p = run({ kvmUserfault: true }, profile)
    await expect(p).rejects.toSatisfy((e: unknown) => KvmUserfaultUnsupported.is(e))
    await expect(p).rejects.toThrow(/EINVAL/)
  })

  test('without -k, a profile without KVM Userfault runs', async () => {
    expectComplete(await run({ uffdMode: 'MISSING' }, 'pvm-6.18'))
  })
})

describe('emulator runDemandPaging: refusals and the deadline', () => {
  test('bad config as resolveDemandPagingConfig says', async () => {
    await expect(run({ uffdMode: 'MINOR' })).rejects.toThrow(/requires shared memory/)
    await expect(run({ vcpus: 0 })).rejects.toBeInstanceOf(RangeError)
    await expect(run({ vcpuMemoryBytes: 1000n })).rejects.toBeInstanceOf(RangeError)
  })

  test('an unavailable backing is a RangeError naming it', async () => {
    await expect(run({ backing: 'anonymous_hugetlb', vcpuMemoryBytes: 2n * MiB })).rejects.toThrow(/anonymous_hugetlb is not available/)
  })

  test('a run past timeoutMs rejects with DemandPagingTimeout and leaves nothing behind', async () => {
    const kvm = emulator()
    const p = kvm.runDemandPaging!({ vcpus: 1, vcpuMemoryBytes: 256n * MiB, uffdMode: 'MISSING', timeoutMs: 1 })
    await expect(p).rejects.toSatisfy((e: unknown) => DemandPagingTimeout.is(e))
    // The backend is still usable afterwards.
    expectComplete(await kvm.runDemandPaging!({ vcpus: 1, vcpuMemoryBytes: MiB }))
  })
})
