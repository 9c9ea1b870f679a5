// kvmconf demand-paging: upstream's demand_paging_test command line on a backend (Backend.runDemandPaging).
//
// The options are demand_paging_test's (upstream-selftests.md §A.1), parsed and checked as it does, and
// the output is its three result lines with the same units; --json prints the whole result instead.

import { parseArgs } from 'node:util'
import type { Backend, Backing } from '../backend.ts'
import { BACKEND_NAMES } from '../backend-names.ts'
import type { DemandPagingConfig, DemandPagingResult, UffdMode } from '../demand-paging-types.ts'
import { KvmError } from '../errors.ts'
import {
  backingUnavailable, DemandPagingTimeout, KvmUserfaultUnsupported, resolveDemandPagingConfig,
} from '../kvm-util/demand-paging.ts'
import { describeExit } from '../kvm-util/ucall.ts'
import { KVM_CAP_MAX_VCPUS } from '../uapi/kvm.ts'
import { EXIT_ALL_SKIPPED, EXIT_FAIL, EXIT_OK, UsageError, oneOf, wholeNumber, withUsage } from './usage.ts'

const BACKINGS = ['anonymous', 'anonymous_thp', 'anonymous_hugetlb', 'shmem', 'shared_hugetlb'] as const

const HELP = `Usage: kvmconf demand-paging [options]

demand_paging_test: every vCPU touches each 4 KiB page of its slice of memstress's region once while
userfaultfd (or KVM Userfault) demand-pages it in, then the three rates are printed as upstream does.

Options (demand_paging_test's):
  -u MISSING|MINOR  resolve faults through userfaultfd in this mode (default: no userfaultfd)
  -a                one userfaultfd for all guest memory instead of one per vCPU
  -d USEC           sleep USEC microseconds before resolving each fault (default 0)
  -r N              reader threads per userfaultfd (default 1)
  -b SIZE           memory demand-paged per vCPU: 10M, 3G, 512k, 4096 (default 1G)
  -s TYPE           backing: ${BACKINGS.join(' | ')} (default anonymous)
  -v N              vCPUs (default 1; at most KVM_CAP_MAX_VCPUS)
  -o                every vCPU touches the whole region (implies -a)
  -c CPUS           pin vCPU i to the i-th pCPU of this comma list; one more entry pins the main thread
  -k                KVM Userfault: KVM_MEM_USERFAULT with every page userfault (KVM Userfault series)
kvmconf's:
  --backend NAME    ${BACKEND_NAMES.join(' | ')} (default: emulator)
  --profile NAME    the emulator's kernel profile
  --timeout MS      stop the run and fail after MS milliseconds (default 600000)
  --json            print the config, per-vCPU pages and rates, and the timings as JSON
  -h, --help        this text

Exit codes: 0 done, 1 failed, 2 usage error, 4 skipped (the backend or kernel lacks what -k or the run needs).
`

/** parse_size(): digits (0x hex allowed), then an optional b/k/m/g/t (either case, a trailing B or iB). */
export function parseSize(text: string): bigint {
  const m = /^(0x[0-9a-f]+|\d+)([bkmgt]?)(i?b)?$/i.exec(text)
  if (m === null || (m[3] !== undefined && m[2] === '')) throw new UsageError(`-b ${text}: not a size (e.g. 10M, 3G, 4096)`)
  const shift = { '': 0n, b: 0n, k: 10n, m: 20n, g: 30n, t: 40n }[(m[2] ?? '').toLowerCase()] ?? 0n
  const bytes = BigInt(m[1]!) << shift
  if (bytes === 0n) throw new UsageError(`-b ${text}: the size must be positive`)
  return bytes
}

function count(option: string, text: string, min: number): number {
  return wholeNumber(`-${option}`, text, min, `an integer >= ${min}`)
}

/** kvm_parse_vcpu_pinning(): one pCPU per vCPU, then optionally one for the main thread. */
function parsePinning(text: string, vcpus: number): NonNullable<DemandPagingConfig['pinning']> {
  const cpus = text.split(',').map((c) => count('c', c.trim(), 0))
  if (cpus.length !== vcpus && cpus.length !== vcpus + 1) {
    throw new UsageError(`-c ${text}: expected ${vcpus} pCPUs (one per vCPU), optionally one more for the main thread`)
  }
  return cpus.length > vcpus ? { vcpus: cpus.slice(0, vcpus), main: cpus[vcpus]! } : { vcpus: cpus }
}

/** The three lines demand_paging_test prints after the run. */
export function upstreamLines(result: DemandPagingResult): string {
  const sec = result.elapsedNs / 1_000_000_000n
  const nsec = result.elapsedNs % 1_000_000_000n
  return [
    `Total guest execution time:\t${sec}.${nsec.toString().padStart(9, '0')}s`,
    `Per-vcpu demand paging rate:\t${result.perVcpuRate.toFixed(6)} pgs/sec/vcpu`,
    `Overall demand paging rate:\t${result.overallRate.toFixed(6)} pgs/sec`,
  ].join('\n') + '\n'
}

/** The result as JSON: bigints as numbers where they are counts or times, GPAs as hex strings. */
export function resultJson(backend: string, kernel: string, r: DemandPagingResult): string {
  const hex = (v: bigint) => `0x${v.toString(16)}`
  return JSON.stringify({
    backend,
    kernel,
    config: { ...r.config, vcpuMemoryBytes: Number(r.config.vcpuMemoryBytes) },
    region: { ...r.region, gpa: hex(r.region.gpa), size: Number(r.region.size) },
    elapsedNs: Number(r.elapsedNs),
    perVcpuRate: r.perVcpuRate,
    overallRate: r.overallRate,
    vcpus: r.vcpus.map((v) => ({
      id: v.id, gpa: hex(v.gpa), pages: v.pages, status: v.outcome.kind,
      elapsedNs: v.outcome.kind === 'synced' ? Number(v.outcome.elapsedNs) : null,
      rate: v.rate,
      exit: v.outcome.kind === 'exit' ? describeExit(v.outcome.exit) : null,
      userfaultExits: v.userfaultExits,
    })),
    uffd: r.uffd,
    kvmUserfault: r.kvmUserfault === null ? null : {
      ...r.kvmUserfault,
      violations: r.kvmUserfault.violations.map((v) => ({ ...v, gpa: hex(v.gpa), size: Number(v.size), flags: hex(v.flags) })),
    },
    pagesWithoutGuestWrite: r.pagesWithoutGuestWrite,
  }, null, 2) + '\n'
}

/** parseArgs, with its errors cut to their first line (some span three). */
function parseOptions(argv: string[]) {
  try {
    return parseOptionsOf(argv)
  } catch (e) {
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) throw new UsageError((e as Error).message.split('\n')[0]!)
    throw e
  }
}

function parseOptionsOf(argv: string[]) {
  return parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      uffd: { type: 'string', short: 'u' },
      'single-uffd': { type: 'boolean', short: 'a' },
      delay: { type: 'string', short: 'd' },
      readers: { type: 'string', short: 'r' },
      size: { type: 'string', short: 'b' },
      backing: { type: 'string', short: 's' },
      vcpus: { type: 'string', short: 'v' },
      overlap: { type: 'boolean', short: 'o' },
      pin: { type: 'string', short: 'c' },
      'kvm-userfault': { type: 'boolean', short: 'k' },
      backend: { type: 'string', default: 'emulator' },
      profile: { type: 'string' },
      timeout: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  })
}

async function demandPaging(argv: string[]): Promise<number> {
  const { values } = parseOptions(argv)
  if (values.help) {
    process.stdout.write(HELP)
    return EXIT_OK
  }
  const backendName = oneOf('backend', values.backend, BACKEND_NAMES)
  if (values.uffd !== undefined && values.uffd !== 'MISSING' && values.uffd !== 'MINOR') {
    throw new UsageError(`-u ${values.uffd}: expected MISSING or MINOR`)
  }
  if (values.backing !== undefined && !(BACKINGS as readonly string[]).includes(values.backing)) {
    throw new UsageError(`-s ${values.backing}: expected one of ${BACKINGS.join(', ')}`)
  }
  const vcpus = values.vcpus === undefined ? 1 : count('v', values.vcpus, 1)
  const config: DemandPagingConfig = {
    vcpus,
    vcpuMemoryBytes: values.size === undefined ? undefined : parseSize(values.size),
    backing: values.backing as Backing | undefined,
    uffdMode: (values.uffd as UffdMode | undefined) ?? null,
    singleUffd: values['single-uffd'] ?? false,
    readersPerUffd: values.readers === undefined ? 1 : count('r', values.readers, 1),
    uffdDelayUs: values.delay === undefined ? 0 : count('d', values.delay, 0),
    overlap: values.overlap ?? false,
    pinning: values.pin === undefined ? null : parsePinning(values.pin, vcpus),
    kvmUserfault: values['kvm-userfault'] ?? false,
    timeoutMs: values.timeout === undefined ? undefined : count('-timeout', values.timeout, 1),
  }
  // Upstream's own checks (MINOR needs shared memory, sizes) before any backend is touched.
  try {
    resolveDemandPagingConfig(config, 4096)
  } catch (e) {
    if (e instanceof RangeError || e instanceof TypeError) throw new UsageError(e.message)
    throw e
  }

  const { loadBackend } = await import('../../backends/index.ts')
  const load = await loadBackend(backendName, { profile: values.profile })
  if (!load.available) {
    process.stderr.write(`kvmconf demand-paging: the ${backendName} backend is not available: ${load.reason}\n`)
    return EXIT_FAIL
  }
  const kvm = load.backend
  try {
    return await runOn(kvm, config, values.json ?? false)
  } finally {
    await kvm.close()
  }
}

async function runOn(kvm: Backend, config: DemandPagingConfig, json: boolean): Promise<number> {
  const say = (line: string) => process.stderr.write(`kvmconf demand-paging: ${line}\n`)
  const info = await kvm.info()
  if (!info.features.includes('demand-paging') || kvm.runDemandPaging === undefined) {
    say(`skipped: the ${kvm.name} backend cannot do 'demand-paging' yet`)
    return EXIT_ALL_SKIPPED
  }
  const maxVcpus = await kvm.checkExtension(KVM_CAP_MAX_VCPUS)
  if (maxVcpus > 0 && (config.vcpus ?? 1) > maxVcpus) {
    throw new UsageError(`-v ${config.vcpus}: more than KVM_CAP_MAX_VCPUS (${maxVcpus})`)
  }
  const unavailable = backingUnavailable(info, config.backing ?? 'anonymous')
  if (unavailable !== undefined) {
    say(unavailable)
    return EXIT_FAIL
  }
  let result: DemandPagingResult
  try {
    result = await kvm.runDemandPaging(config)
  } catch (e) {
    if (KvmUserfaultUnsupported.is(e)) {
      say(`skipped: ${e.message}`)
      return EXIT_ALL_SKIPPED
    }
    if (DemandPagingTimeout.is(e) || KvmError.is(e) || e instanceof RangeError) {
      say(e.message)
      return EXIT_FAIL
    }
    throw e
  }
  if (json) process.stdout.write(resultJson(kvm.name, info.kernelRelease, result))
  const failed = result.vcpus.filter((v) => v.outcome.kind !== 'synced')
  for (const v of failed) {
    if (v.outcome.kind === 'exit') say(`vCPU ${v.id}: Invalid guest sync status: ${describeExit(v.outcome.exit)}`)
  }
  if (failed.length > 0) return EXIT_FAIL
  if (!json) process.stdout.write(upstreamLines(result))
  return EXIT_OK
}

export const demandPagingVerb = {
  summary: "demand_paging_test's run on a backend, with its options and its three result lines",
  run: (argv: string[]) => withUsage('demand-paging', () => demandPaging(argv)),
}
