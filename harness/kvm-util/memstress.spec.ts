// memstress's layout and demand_paging_test's userfaultfd plan: pure functions, checked as properties.

import fc from 'fast-check'
import { describe, expect, test } from 'vitest'

import { BOOT_SLOT_SIZE, IDENTITY_MAP_END } from '../guest-program.ts'
import { UFFDIO_REGISTER_MODE_MINOR, UFFDIO_REGISTER_MODE_MISSING, _UFFDIO_CONTINUE, _UFFDIO_COPY } from '../uapi/userfaultfd.ts'
import { demandPagingPlan, resolveDemandPagingConfig } from './demand-paging.ts'
import { DEFAULT_PER_VCPU_MEM_SIZE, MEMSTRESS_WRITE_VALUE, memstressGuestCode, memstressLayout } from './memstress.ts'
import { minorPrefaultRanges, uffdSetupPlan } from './userfaultfd-util.ts'

const MiB = 1n << 20n

describe('memstress', () => {
  test('the region sits one page below the top of the identity map, aligned to the backing page', () => {
    const l = memstressLayout({ nrVcpus: 2, vcpuMemoryBytes: 4n * MiB, backingPageSize: 4096, partition: true })
    expect(l.slot).toBe(1)
    expect(l.size).toBe(8n * MiB)
    expect(l.gpa).toBe(IDENTITY_MAP_END - 8n * MiB - 4096n)
    const thp = memstressLayout({ nrVcpus: 1, vcpuMemoryBytes: 4n * MiB, backingPageSize: 2 << 20, partition: true })
    expect(thp.gpa % (2n * MiB)).toBe(0n)
    expect(thp.gpa + thp.size).toBeLessThanOrEqual(IDENTITY_MAP_END - 4096n)
  })

  test('property: partitioned slices tile the region in order; overlapped vCPUs each get all of it', () => {
    fc.assert(fc.property(
      fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 4096 }), fc.constantFrom(4096, 2 << 20), fc.boolean(),
      (nrVcpus, units, backingPageSize, partition) => {
        const vcpuMemoryBytes = BigInt(units) * BigInt(backingPageSize)
        if (vcpuMemoryBytes * BigInt(nrVcpus) > IDENTITY_MAP_END - BigInt(BOOT_SLOT_SIZE) - 4096n) return
        const l = memstressLayout({ nrVcpus, vcpuMemoryBytes, backingPageSize, partition })
        expect(l.gpa % BigInt(backingPageSize)).toBe(0n)
        expect(l.gpa).toBeGreaterThanOrEqual(BigInt(BOOT_SLOT_SIZE))
        expect(l.gpa + l.size).toBeLessThanOrEqual(IDENTITY_MAP_END)
        let next = l.gpa
        for (const v of l.vcpuArgs) {
          if (partition) {
            expect(v.gpa).toBe(next)
            expect(BigInt(v.pages) * 4096n).toBe(vcpuMemoryBytes)
            next += vcpuMemoryBytes
          } else {
            expect(v.gpa).toBe(l.gpa)
            expect(BigInt(v.pages) * 4096n).toBe(l.size)
          }
        }
        if (partition) expect(next).toBe(l.gpa + l.size)
      },
    ))
  })

  test('sizes upstream asserts on are RangeErrors', () => {
    expect(() => memstressLayout({ nrVcpus: 1, vcpuMemoryBytes: 1000n, backingPageSize: 4096, partition: true })).toThrow(RangeError)
    expect(() => memstressLayout({ nrVcpus: 1, vcpuMemoryBytes: 4096n, backingPageSize: 2 << 20, partition: true })).toThrow(RangeError)
    expect(() => memstressLayout({ nrVcpus: 0, vcpuMemoryBytes: 4096n, backingPageSize: 4096, partition: true })).toThrow(RangeError)
    expect(() => memstressLayout({ nrVcpus: 64, vcpuMemoryBytes: 1n << 30n, backingPageSize: 4096, partition: true })).toThrow(/do not fit/)
  })

  test("the guest pass: touch_pages over the slice with the memstress value, then GUEST_SYNC(1)", () => {
    const p = memstressGuestCode({ vcpuIdx: 1, gpa: 0x1000_0000n, pages: 3 }, true)
    expect(p.steps[0]).toEqual({ op: 'touch_pages', gva: 0x1000_0000n, pages: 3, stride: 4096, write: true, value: MEMSTRESS_WRITE_VALUE })
    expect(p.steps[1]).toEqual({ op: 'signal', port: 0x10, value: 1 })
  })
})

describe('userfaultfd_util plan', () => {
  const layout = memstressLayout({ nrVcpus: 3, vcpuMemoryBytes: 2n * MiB, backingPageSize: 4096, partition: true })

  test('one userfaultfd per vCPU slice, or one for everything with -a', () => {
    const per = uffdSetupPlan({ layout, mode: 'MISSING', singleUffd: false, overlap: false, readersPerUffd: 2, delayUs: 5 })
    expect(per.descs).toEqual(layout.vcpuArgs.map((v) => ({ gpa: v.gpa, len: 2n * MiB })))
    expect(per.registerMode).toBe(UFFDIO_REGISTER_MODE_MISSING)
    expect(per.expectedIoctl).toBe(1n << BigInt(_UFFDIO_COPY))
    const single = uffdSetupPlan({ layout, mode: 'MINOR', singleUffd: true, overlap: false, readersPerUffd: 1, delayUs: 0 })
    expect(single.descs).toEqual([{ gpa: layout.gpa, len: layout.size }])
    expect(single.registerMode).toBe(UFFDIO_REGISTER_MODE_MINOR)
    expect(single.expectedIoctl).toBe(1n << BigInt(_UFFDIO_CONTINUE))
  })

  test('-o forces a single userfaultfd over the whole region', () => {
    const over = memstressLayout({ nrVcpus: 3, vcpuMemoryBytes: 2n * MiB, backingPageSize: 4096, partition: false })
    const plan = uffdSetupPlan({ layout: over, mode: 'MISSING', singleUffd: false, overlap: true, readersPerUffd: 1, delayUs: 0 })
    expect(plan.descs).toEqual([{ gpa: over.gpa, len: over.size }])
  })

  test("MINOR's prefault covers every vCPU's slice (the series' fix), the whole region once with -o", () => {
    expect(minorPrefaultRanges(layout, false)).toEqual(layout.vcpuArgs.map((v) => ({ gpa: v.gpa, len: 2n * MiB })))
    const over = memstressLayout({ nrVcpus: 3, vcpuMemoryBytes: 2n * MiB, backingPageSize: 4096, partition: false })
    expect(minorPrefaultRanges(over, true)).toEqual([{ gpa: over.gpa, len: over.size }])
  })
})

describe('demand paging config', () => {
  test("upstream's defaults: 1 vCPU, 1 GiB, anonymous, no userfaultfd, one reader, writes", () => {
    const c = resolveDemandPagingConfig({}, 4096)
    expect(c).toMatchObject({
      vcpus: 1, vcpuMemoryBytes: DEFAULT_PER_VCPU_MEM_SIZE, backing: 'anonymous', uffdMode: null, singleUffd: false,
      readersPerUffd: 1, uffdDelayUs: 0, overlap: false, pinning: null, kvmUserfault: false, write: true,
    })
    expect(demandPagingPlan(c, 4096).uffd).toBeNull()
  })

  test('-o implies -a; MINOR needs shared memory, with upstream\'s message', () => {
    expect(resolveDemandPagingConfig({ overlap: true }, 4096).singleUffd).toBe(true)
    expect(() => resolveDemandPagingConfig({ uffdMode: 'MINOR' }, 4096))
      .toThrow(new RangeError('userfaultfd MINOR mode requires shared memory; pick a different -s'))
    expect(resolveDemandPagingConfig({ uffdMode: 'MINOR', backing: 'shmem' }, 4096).uffdMode).toBe('MINOR')
  })
})
