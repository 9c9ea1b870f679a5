// runDemandPaging on the native backend, beyond what suites/demand_paging.test.ts checks: a bad config
// is a TypeError or RangeError (from the contract and from the raw addon), never a crash; a failing
// kernel call and a guest that does not sync are reported; a run past its deadline is stopped and
// rejects; -k is refused on a kernel without KVM Userfault; repeated runs leak no fd, thread, mapping
// or handle; and a process that exits mid-run exits cleanly.

import { spawnSync } from 'node:child_process'
import { readdir, readFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import fc from 'fast-check'
import { afterAll, describe, expect, test } from 'vitest'

import type { DemandPagingConfig } from '../../harness/demand-paging-types.ts'
import { DemandPagingTimeout, KvmUserfaultUnsupported } from '../../harness/kvm-util/demand-paging.ts'
import { memstressGuestCode } from '../../harness/kvm-util/memstress.ts'
import { UCALL_SYNC } from '../../harness/kvm-util/ucall.ts'
import { UFFDIO_REGISTER_MODE_MISSING, _UFFDIO_COPY } from '../../harness/uapi/userfaultfd.ts'
import { convertError, type NativeAddon, type RawDemandPagingSpec } from './addon.ts'
import { compileGuestProgram } from './guest-code/index.ts'
import { load, nativeAddon, nativeBackend, openFdCount } from './spec-support.ts'

afterAll(async () => {
  if (load.available) await load.backend.close()
})

const MiB = 1n << 20n
/** Threads of demand-paging runs (the addon names them kvmconf-dp*); other addon threads come and go. */
async function runThreads(): Promise<number> {
  let n = 0
  for (const tid of await readdir('/proc/self/task')) {
    try {
      if ((await readFile(`/proc/self/task/${tid}/comm`, 'utf8')).startsWith('kvmconf-dp')) n++
    } catch {
      // the thread left meanwhile
    }
  }
  return n
}

/** A raw run of one vCPU over `pages` pages: a VM, its boot slot, the region; `spec` ready to start. */
function rawRun(addon: NativeAddon, pages = 64) {
  const sys = addon.systemOpen()
  const vm = addon.createVm(sys, 0)
  const boot = addon.mappingCreate(2n * MiB, 'anonymous', false)
  addon.vmSetUserMemoryRegion(vm, 0, 0, 0n, 2n * MiB, addon.mappingInfo(boot).addr)
  const size = BigInt(pages) * 4096n
  const gpa = 1n << 32n
  const region = addon.mappingCreate(size, 'anonymous', false)
  addon.vmSetUserMemoryRegion(vm, 1, 0, gpa, size, addon.mappingInfo(region).addr)
  const compiled = compileGuestProgram(memstressGuestCode({ vcpuIdx: 0, gpa, pages }, true), { vcpuId: 0 })
  const spec: RawDemandPagingSpec = {
    regionGpa: gpa, hostPageSize: 4096, unitBytes: 4096, guestPageSize: 4096, syncPort: UCALL_SYNC,
    vcpus: [{ id: 0, regs: compiled.regs, sregs: compiled.sregs, cpu: -1 }], mainCpu: -1,
    uffdMode: 'MISSING', uffdRanges: [{ gpa, len: size }], registerMode: BigInt(UFFDIO_REGISTER_MODE_MISSING),
    expectedIoctl: 1n << BigInt(_UFFDIO_COPY), readersPerUffd: 1, delayUs: 0, writeValue: 0x0123456789abcdefn,
    timeoutMs: 10_000,
  }
  return {
    sys, vm, region, spec,
    load: () => addon.mappingWrite(boot, 0n, compiled.bootSlot.bytes),
    close: () => {
      addon.vmClose(vm)
      addon.mappingClose(region)
      addon.mappingClose(boot)
      addon.systemClose(sys)
    },
  }
}

describe('native runDemandPaging', () => {
  test.for<[string, unknown, 'TypeError' | 'RangeError']>([
    ['no config', null, 'TypeError'],
    ['vcpus 0', { vcpus: 0 }, 'RangeError'],
    ['vcpus 1.5', { vcpus: 1.5 }, 'RangeError'],
    ["vcpus '2'", { vcpus: '2' }, 'TypeError'],
    ['vcpus past the boot slot', { vcpus: 97, vcpuMemoryBytes: 4096 }, 'RangeError'],
    ['a size that is not a page multiple', { vcpuMemoryBytes: 1000 }, 'RangeError'],
    ['a negative size', { vcpuMemoryBytes: -4096 }, 'RangeError'],
    ['more memory than the identity map', { vcpus: 2, vcpuMemoryBytes: 32n << 30n }, 'RangeError'],
    ['an unknown backing', { backing: 'tmpfs' }, 'TypeError'],
    ['an unavailable backing', { backing: 'shared_hugetlb', vcpuMemoryBytes: 2n * MiB }, 'RangeError'],
    ['an unknown uffd mode', { uffdMode: 'WP' }, 'TypeError'],
    ['MINOR on anonymous memory', { uffdMode: 'MINOR' }, 'RangeError'],
    ['-r 0', { uffdMode: 'MISSING', readersPerUffd: 0 }, 'RangeError'],
    ['-d -1', { uffdDelayUs: -1 }, 'RangeError'],
    ['-c with too few pCPUs', { vcpus: 2, pinning: { vcpus: [0] } }, 'RangeError'],
    ['-c with no list', { pinning: { main: 0 } }, 'TypeError'],
    ['timeoutMs 0', { timeoutMs: 0 }, 'RangeError'],
    ['overlap as a string', { overlap: 'yes' }, 'TypeError'],
  ])('%s is a %s', async ([, config, errorName], ctx) => {
    const kvm = nativeBackend(ctx)
    const run = kvm.runDemandPaging!(config as DemandPagingConfig)
    await expect(run).rejects.toMatchObject({ name: errorName })
  })

  test('a bad spec to the raw addon is a TypeError or RangeError before any thread starts', async (ctx) => {
    const addon = nativeAddon(ctx)
    const r = rawRun(addon)
    const wild = fc.oneof(
      fc.constantFrom(undefined, null, -1, 1.5, NaN, 2 ** 53, 'x', -1n, 1n << 64n, [], {}, new Uint8Array(3)),
      fc.integer({ min: -3, max: 70_000 }),
    )
    const keys = Object.keys(r.spec) as (keyof RawDemandPagingSpec)[]
    const outcomes = new Map<string, number>()
    fc.assert(fc.property(fc.constantFrom(...keys), wild, (key, value) => {
      const spec = { ...r.spec, [key]: value }
      let kind = 'accepted'
      try {
        // A spec that passes the checks would start a run: only ones that must fail are kept.
        if (isValidReplacement(key, value)) return
        void addon.demandPagingRun(r.vm, r.region, null, spec as RawDemandPagingSpec)
      } catch (e) {
        kind = (convertError(e) as Error).name
      }
      outcomes.set(kind, (outcomes.get(kind) ?? 0) + 1)
      expect(['TypeError', 'RangeError'], `${key} = ${String(value)}`).toContain(kind)
    }), { numRuns: 300 })
    const refused = (outcomes.get('TypeError') ?? 0) + (outcomes.get('RangeError') ?? 0)
    expect(refused, [...outcomes].map(([k, n]) => `${k} ${n}`).join(', ')).toBeGreaterThan(200)
    for (const bad of [{ vcpus: [] }, { uffdRanges: [] }, { uffdRanges: [{ gpa: 0n, len: 4096n }] }, { hostPageSize: 8192 },
      { unitBytes: 4097 }, { vcpus: [{ id: 0, regs: new Uint8Array(144), sregs: new Uint8Array(311), cpu: -1 }] }]) {
      expect(() => addon.demandPagingRun(r.vm, r.region, null, { ...r.spec, ...bad } as RawDemandPagingSpec), JSON.stringify(Object.keys(bad)))
        .toThrow(/spec|region/)
    }
    expect(() => addon.demandPagingRun(r.vm, r.region, 99999, r.spec)).toThrow(expect.objectContaining({ name: 'NativeErrnoError', errno: 9 }))
    expect(await runThreads()).toBe(0)
    r.close()
  })

  test('a failing UFFDIO_REGISTER is reported with its errno and op, and the run frees everything', async (ctx) => {
    const addon = nativeAddon(ctx)
    const fds = await openFdCount()
    const r = rawRun(addon)
    await r.load()
    const out = await addon.demandPagingRun(r.vm, r.region, null, { ...r.spec, registerMode: 1n << 40n })
    expect(out.error).toEqual({ errno: 22, op: 'UFFDIO_REGISTER' })
    r.close()
    expect(await openFdCount()).toBe(fds)
  })

  test('a guest that does not reach GUEST_SYNC is reported as its exit', async (ctx) => {
    const addon = nativeAddon(ctx)
    const r = rawRun(addon)
    await r.load()
    const out = await addon.demandPagingRun(r.vm, r.region, null, { ...r.spec, syncPort: UCALL_SYNC + 1 })
    expect(out.error).toBeNull()
    expect(out.vcpus[0]).toMatchObject({ synced: false, exit: { kind: 'io', port: UCALL_SYNC, direction: 'out' } })
    r.close()
  })

  test('a run past its deadline is stopped: DemandPagingTimeout, every thread joined, every fd closed', async (ctx) => {
    const kvm = nativeBackend(ctx)
    const addon = nativeAddon(ctx)
    const fds = await openFdCount()
    const counts = addon.counts()
    const started = Date.now()
    // 100 ms per fault over 2 × 256 pages: about 50 s, stopped after 300 ms.
    const run = kvm.runDemandPaging!({ vcpus: 2, vcpuMemoryBytes: MiB, uffdMode: 'MISSING', uffdDelayUs: 100_000, timeoutMs: 300 })
    run.catch(() => {})
    await new Promise((resolve) => setTimeout(resolve, 150))
    expect(await runThreads(), 'the coordinator, 2 vCPU threads, 2 readers').toBe(5)
    await expect(run).rejects.toSatisfy((e) => DemandPagingTimeout.is(e) && e.code === 'ETIMEDOUT' && e.vcpusSynced === 0)
    expect(Date.now() - started).toBeLessThan(5000)
    expect(await openFdCount()).toBe(fds)
    expect(await runThreads()).toBe(0)
    expect(addon.counts()).toEqual(counts)
  })

  test('-k on this kernel: KvmUserfaultUnsupported, or a run when KVM_MEM_USERFAULT is accepted', async (ctx) => {
    const kvm = nativeBackend(ctx)
    try {
      const r = await kvm.runDemandPaging!({ vcpuMemoryBytes: MiB, kvmUserfault: true })
      expect(r.kvmUserfault?.violations).toEqual([])
    } catch (e) {
      expect(KvmUserfaultUnsupported.is(e), String(e)).toBe(true)
      expect((e as Error).message).toBe(
        `this kernel lacks KVM Userfault (KVM_MEM_USERFAULT refused by KVM_SET_USER_MEMORY_REGION2: ${(e as KvmUserfaultUnsupported).code})`)
    }
  })

  test('repeated runs keep the fd count, the threads, the handles and RSS steady', async (ctx) => {
    const kvm = nativeBackend(ctx)
    const addon = nativeAddon(ctx)
    const configs: DemandPagingConfig[] = [
      { vcpus: 2, vcpuMemoryBytes: MiB, uffdMode: 'MISSING', readersPerUffd: 2 },
      { vcpus: 2, vcpuMemoryBytes: MiB, uffdMode: 'MINOR', backing: 'shmem', singleUffd: true, samplePages: 4 },
      { vcpus: 1, vcpuMemoryBytes: MiB },
    ]
    // Warm-up: V8's heap, glibc's per-thread arenas and the addon's pool settle in the first runs.
    for (let i = 0; i < 30; i++) await kvm.runDemandPaging!(configs[i % configs.length]!)
    const fds = await openFdCount()
    const counts = addon.counts()
    const rss = process.memoryUsage.rss()
    // A leaked region (1-2 MiB a run) would add well over the bound in 90 runs; GC noise stays under it.
    for (let i = 0; i < 90; i++) {
      const r = await kvm.runDemandPaging!(configs[i % configs.length]!)
      expect(r.vcpus.every((v) => v.outcome.kind === 'synced')).toBe(true)
    }
    expect(await openFdCount()).toBe(fds)
    expect(await runThreads()).toBe(0)
    expect(addon.counts()).toEqual(counts)
    const grown = process.memoryUsage.rss() - rss
    expect(grown, `RSS grew by ${(grown / 2 ** 20).toFixed(1)} MiB`).toBeLessThan(64 * 2 ** 20)
  }, 60_000)

  test('a process that exits in the middle of a run stops it and exits cleanly', (ctx) => {
    nativeBackend(ctx)
    const here = path.dirname(fileURLToPath(import.meta.url))
    const script = `
      const { loadNative } = await import(${JSON.stringify(path.join(here, 'load.ts'))})
      const load = await loadNative()
      load.backend.runDemandPaging({ vcpus: 2, vcpuMemoryBytes: 1 << 20, uffdMode: 'MISSING', uffdDelayUs: 100000 })
      setTimeout(() => process.exit(7), 300)
    `
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      encoding: 'utf8', timeout: 20_000, cwd: path.resolve(here, '../..'),
    })
    expect(r.stderr).toBe('')
    expect(r.status).toBe(7)
  })

  test('a guest access outside every memslot ends the vCPU pass with that exit', async (ctx) => {
    const addon = nativeAddon(ctx)
    const r = rawRun(addon)
    await r.load()
    addon.vmSetUserMemoryRegion(r.vm, 1, 0, r.spec.regionGpa, 0n, 0n) // memslot 1 deleted under the guest
    const out = await addon.demandPagingRun(r.vm, r.region, null, { ...r.spec, uffdMode: null, uffdRanges: [] })
    expect(out.error).toBeNull()
    expect(out.vcpus[0]).toMatchObject({ synced: false, exit: { kind: 'mmio', physAddr: r.spec.regionGpa, isWrite: true } })
    r.close()
  })
})

/** Replacements the addon must accept (the property only keeps values that must be refused). */
function isValidReplacement(key: keyof RawDemandPagingSpec, value: unknown): boolean {
  const int = (min: number, max: number) => typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max
  switch (key) {
    case 'syncPort': return int(0, 65535)
    case 'mainCpu': return int(-1, 1023)
    case 'readersPerUffd': return int(1, 1024)
    case 'delayUs': return int(0, 2 ** 32 - 1)
    case 'timeoutMs': return int(1, 2 ** 31 - 1)
    case 'hostPageSize': return value === 4096
    case 'unitBytes':
    case 'guestPageSize': return int(1, 2 ** 30) && ((value as number) & ((value as number) - 1)) === 0
    case 'writeValue': return value === null || (typeof value === 'bigint' && value >= 0n && value < 1n << 64n)
    case 'registerMode':
    case 'expectedIoctl': return typeof value === 'bigint' && value >= 0n && value < 1n << 64n
    default: return false
  }
}
