// kvmconf demand-paging: upstream's option parsing (parse_size, the checks it asserts), its three output
// lines, and the command's exit codes. The runs use the native backend when it is available.

import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import fc from 'fast-check'
import { describe, expect, test } from 'vitest'

import type { DemandPagingResult } from '../demand-paging-types.ts'
import { loadNative } from '../../backends/native/load.ts'
import { parseSize, upstreamLines } from './demand-paging.ts'

const bin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), 'kvmconf.mjs')
const native = await loadNative()
if (native.available) await native.backend.close()

function kvmconf(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

describe('kvmconf demand-paging', () => {
  test('parse_size: a number, then an optional b/k/m/g/t in either case', () => {
    expect(parseSize('4096')).toBe(4096n)
    expect(parseSize('10M')).toBe(10n << 20n)
    expect(parseSize('3g')).toBe(3n << 30n)
    expect(parseSize('512k')).toBe(512n << 10n)
    expect(parseSize('1T')).toBe(1n << 40n)
    expect(parseSize('0x1000')).toBe(4096n)
    expect(parseSize('64MiB')).toBe(64n << 20n)
    for (const bad of ['', 'M', '10Q', '-1', '1.5G', '10 M', '0', 'iB']) expect(() => parseSize(bad), bad).toThrow(/-b /)
    fc.assert(fc.property(fc.nat({ max: 1 << 20 }), fc.constantFrom('', 'k', 'M', 'g'), (n, unit) => {
      const shift = { '': 0n, k: 10n, M: 20n, g: 30n }[unit]!
      if (n === 0) return
      expect(parseSize(`${n}${unit}`)).toBe(BigInt(n) << shift)
    }))
  })

  test("upstream's three lines: seconds with 9 digits of nanoseconds, rates with %f", () => {
    const result = { elapsedNs: 1_002_003_004n, perVcpuRate: 16384.5, overallRate: 32769 } as DemandPagingResult
    expect(upstreamLines(result)).toBe(
      'Total guest execution time:\t1.002003004s\n' +
        'Per-vcpu demand paging rate:\t16384.500000 pgs/sec/vcpu\n' +
        'Overall demand paging rate:\t32769.000000 pgs/sec\n',
    )
  })

  test('--help describes the upstream options and exits 0', () => {
    const r = kvmconf('demand-paging', '--help')
    expect(r.status).toBe(0)
    for (const opt of ['-u MISSING|MINOR', '-a', '-d USEC', '-r N', '-b SIZE', '-s TYPE', '-v N', '-o', '-c CPUS', '-k', '--backend', '--json']) {
      expect(r.stdout).toContain(opt)
    }
  })

  test.for([
    [['-u', 'MINOR'], /userfaultfd MINOR mode requires shared memory; pick a different -s/],
    [['-u', 'WP'], /-u WP: expected MISSING or MINOR/],
    [['-r', '0'], /-r 0: expected an integer >= 1/],
    [['-v', '0'], /-v 0: expected an integer >= 1/],
    [['-d', '-5'], /Option '-d' argument is ambiguous\. \(see/],
    [['-d-5'], /-d -5: expected an integer >= 0/],
    [['-b', '10Q'], /-b 10Q: not a size/],
    [['-b', '1000'], /not a multiple of the anonymous page size/],
    [['-s', 'tmpfs'], /-s tmpfs: expected one of anonymous, /],
    [['-v', '2', '-c', '0'], /-c 0: expected 2 pCPUs/],
    [['--backend', 'qemu'], /--backend qemu: expected one of/],
    [['-x'], /Unknown option '-x'/],
  ] as [string[], RegExp][])('%j is a usage error: one line, exit 2', ([args, message]) => {
    const r = kvmconf('demand-paging', ...args)
    expect(r.stderr).toMatch(message)
    expect(r.status).toBe(2)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
  })

  test('-k on a kernel without KVM Userfault: a skip (exit 4) that says so', () => {
    const r = kvmconf('demand-paging', '-k', '-b', '4M', '--backend', 'emulator', '--profile', 'upstream-6.18')
    expect(r.stderr).toMatch(/this kernel lacks KVM Userfault \(KVM_MEM_USERFAULT refused by KVM_SET_USER_MEMORY_REGION2: EINVAL\)/)
    expect(r.status).toBe(4)
  })

  test('-k -v 2 on the emulator (KVM Userfault series v3) prints the three lines', () => {
    const r = kvmconf('demand-paging', '-k', '-v', '2', '-b', '4M', '--backend', 'emulator')
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/^Total guest execution time:\t\d+\.\d{9}s\nPer-vcpu demand paging rate:\t\d+\.\d{6} pgs\/sec\/vcpu\n/)
  })

  test.skipIf(!native.available)('-u MISSING -v 2 -b 8M --backend native prints the three lines', () => {
    const r = kvmconf('demand-paging', '-u', 'MISSING', '-v', '2', '-b', '8M', '--backend', 'native')
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout).toMatch(
      /^Total guest execution time:\t\d+\.\d{9}s\nPer-vcpu demand paging rate:\t\d+\.\d{6} pgs\/sec\/vcpu\nOverall demand paging rate:\t\d+\.\d{6} pgs\/sec\n$/,
    )
  })

  test.skipIf(!native.available)('--json carries the config, per-vCPU pages and rates, and the timings', () => {
    const r = kvmconf('demand-paging', '-u', 'MINOR', '-s', 'shmem', '-a', '-v', '2', '-b', '4M', '--backend', 'native', '--json')
    expect(r.status, r.stderr).toBe(0)
    const out = JSON.parse(r.stdout) as Record<string, unknown> & { vcpus: Record<string, unknown>[]; uffd: Record<string, number> }
    expect(out.config).toMatchObject({ vcpus: 2, vcpuMemoryBytes: 4 << 20, backing: 'shmem', uffdMode: 'MINOR', singleUffd: true })
    expect(out.vcpus).toHaveLength(2)
    for (const v of out.vcpus) expect(v).toMatchObject({ pages: 1024, status: 'synced', rate: expect.any(Number), elapsedNs: expect.any(Number) })
    expect(out.elapsedNs).toBeGreaterThan(0)
    expect(out.overallRate).toBeGreaterThan(0)
    expect(out.uffd).toMatchObject({ uffds: 1, units: 2048, unitsResolvedOnce: 2048 })
  })

  test.skipIf(!native.available)('-k: a skip (exit 4) naming what the kernel lacks, or a run where it has KVM Userfault', () => {
    const r = kvmconf('demand-paging', '-k', '-b', '4M', '--backend', 'native')
    if (r.status === 0) {
      expect(r.stdout).toMatch(/^Total guest execution time:/) // a kernel with the series runs it
    } else {
      expect(r.stderr).toMatch(/skipped: this kernel lacks KVM Userfault \(KVM_MEM_USERFAULT refused by KVM_SET_USER_MEMORY_REGION2: E[A-Z]+\)/)
      expect(r.status).toBe(4)
    }
  })
})
