// Backend.runDemandPaging's config and result to and from kvmconf.proto's messages (convert.ts's rules:
// the config goes as the caller gave it, for the hosted backend to validate; u64 results are range-checked;
// every pair has a round-trip property in convert.spec.ts).

import type { Backing } from '../../harness/backend.ts'
import type {
  DemandPagingConfig, DemandPagingResult, DemandPagingUffdStats, DemandPagingUserfaultStats, DemandPagingVcpuResult,
  ResolvedDemandPagingConfig, UffdMode, UserfaultExitViolation,
} from '../../harness/demand-paging-types.ts'
import {
  bytesFrom, fromOptInt, MalformedMessage, num, optNum, toOptInt, u64From, u64Out,
} from './convert.ts'
import { fromExit, toExit } from './convert-vcpu.ts'
import type { EmptyMsg, IntMsg, VcpuExitMsg, Wire64 } from './protocol.ts'

export interface PinningMsg {
  vcpus: number[]
  main?: number | undefined
}

export interface DemandPagingConfigMsg {
  vcpus?: number | undefined
  vcpuMemoryBytes: IntMsg | null
  backing?: string | undefined
  uffdModeValue?: 'uffdModeNull' | 'uffdMode'
  uffdModeNull?: EmptyMsg | null
  uffdMode?: string
  singleUffd?: boolean | undefined
  readersPerUffd?: number | undefined
  uffdDelayUs?: number | undefined
  overlap?: boolean | undefined
  pinningValue?: 'pinningNull' | 'pinning'
  pinningNull?: EmptyMsg | null
  pinning?: PinningMsg | null
  kvmUserfault?: boolean | undefined
  write?: boolean | undefined
  samplePages?: number | undefined
  timeoutMs?: number | undefined
}

export interface ResolvedConfigMsg {
  vcpus: number
  vcpuMemoryBytes: Wire64
  backing: string
  uffdMode?: string | undefined
  singleUffd: boolean
  readersPerUffd: number
  uffdDelayUs: number
  overlap: boolean
  pinning: PinningMsg | null
  kvmUserfault: boolean
  write: boolean
  samplePages: number
  timeoutMs: number
}

export interface DemandPagingVcpuMsg {
  id: number
  gpa: Wire64
  pages: number
  outcome?: 'syncedNs' | 'exit'
  syncedNs?: Wire64
  exit?: VcpuExitMsg | null
  rate?: number | undefined
  userfaultExits: number
}

type Stats<T> = { [K in keyof T]: T[K] extends bigint ? Wire64 : T[K] extends (infer E)[] ? Stats<E>[] : T[K] }

export interface DemandPagingResultMsg {
  config: ResolvedConfigMsg | null
  region: { slot: number; gpa: Wire64; size: Wire64; guestPageSize: number } | null
  elapsedNs: Wire64
  vcpus: DemandPagingVcpuMsg[]
  perVcpuRate: number
  overallRate: number
  uffd: DemandPagingUffdStats | null
  kvmUserfault: Stats<DemandPagingUserfaultStats> | null
  pagesWithoutGuestWrite?: number | undefined
  samples: { gpa: Wire64; bytes: Uint8Array }[]
}

function optBool(v: unknown, field: string): boolean | undefined {
  if (v !== undefined && typeof v !== 'boolean') throw new TypeError(`${field}: ${String(v)} is not a boolean`)
  return v
}

function optString(v: unknown, field: string): string | undefined {
  if (v !== undefined && typeof v !== 'string') throw new TypeError(`${field}: ${String(v)} is not a string`)
  return v
}

function set<T extends object, K extends keyof T>(o: T, key: K, v: T[K] | undefined): void {
  if (v !== undefined) o[key] = v
}

// ---------------------------------------------------------------------------------------------------
// The config, as given

export function toDemandPagingConfig(c: DemandPagingConfig): DemandPagingConfigMsg {
  if (typeof c !== 'object' || c === null) throw new TypeError('demand paging config: not an object')
  const m: DemandPagingConfigMsg = {
    vcpus: optNum(c.vcpus, 'vcpus'),
    vcpuMemoryBytes: toOptInt(c.vcpuMemoryBytes, 'vcpuMemoryBytes'),
    backing: optString(c.backing, 'backing'),
    singleUffd: optBool(c.singleUffd, 'singleUffd'),
    readersPerUffd: optNum(c.readersPerUffd, 'readersPerUffd'),
    uffdDelayUs: optNum(c.uffdDelayUs, 'uffdDelayUs'),
    overlap: optBool(c.overlap, 'overlap'),
    kvmUserfault: optBool(c.kvmUserfault, 'kvmUserfault'),
    write: optBool(c.write, 'write'),
    samplePages: optNum(c.samplePages, 'samplePages'),
    timeoutMs: optNum(c.timeoutMs, 'timeoutMs'),
  }
  if (c.uffdMode === null) m.uffdModeNull = {}
  else if (c.uffdMode !== undefined) m.uffdMode = optString(c.uffdMode, 'uffdMode') as string
  if (c.pinning === null) m.pinningNull = {}
  else if (c.pinning !== undefined) {
    if (typeof c.pinning !== 'object' || !Array.isArray(c.pinning.vcpus)) throw new TypeError('pinning: expected { vcpus: number[], main? }')
    m.pinning = { vcpus: c.pinning.vcpus.map((v, i) => num(v, `pinning.vcpus[${i}]`)), main: optNum(c.pinning.main, 'pinning.main') }
  }
  return m
}

export function fromDemandPagingConfig(m: DemandPagingConfigMsg | null): DemandPagingConfig {
  if (m === null) throw new MalformedMessage('config: missing')
  const c: DemandPagingConfig = {}
  set(c, 'vcpus', m.vcpus)
  set(c, 'vcpuMemoryBytes', fromOptInt(m.vcpuMemoryBytes, 'vcpuMemoryBytes'))
  set(c, 'backing', m.backing as Backing | undefined)
  if (m.uffdModeValue === 'uffdModeNull') c.uffdMode = null
  if (m.uffdModeValue === 'uffdMode') c.uffdMode = m.uffdMode as UffdMode
  set(c, 'singleUffd', m.singleUffd)
  set(c, 'readersPerUffd', m.readersPerUffd)
  set(c, 'uffdDelayUs', m.uffdDelayUs)
  set(c, 'overlap', m.overlap)
  if (m.pinningValue === 'pinningNull') c.pinning = null
  if (m.pinningValue === 'pinning' && m.pinning) {
    c.pinning = { vcpus: [...m.pinning.vcpus], ...(m.pinning.main === undefined ? {} : { main: m.pinning.main }) }
  }
  set(c, 'kvmUserfault', m.kvmUserfault)
  set(c, 'write', m.write)
  set(c, 'samplePages', m.samplePages)
  set(c, 'timeoutMs', m.timeoutMs)
  return c
}

// ---------------------------------------------------------------------------------------------------
// The result

function toResolvedConfig(c: ResolvedDemandPagingConfig): ResolvedConfigMsg {
  return {
    vcpus: c.vcpus, vcpuMemoryBytes: u64Out(c.vcpuMemoryBytes, 'config.vcpuMemoryBytes'), backing: c.backing,
    ...(c.uffdMode === null ? {} : { uffdMode: c.uffdMode }),
    singleUffd: c.singleUffd, readersPerUffd: c.readersPerUffd, uffdDelayUs: c.uffdDelayUs, overlap: c.overlap,
    pinning: c.pinning === null ? null : { vcpus: [...c.pinning.vcpus], ...(c.pinning.main === null ? {} : { main: c.pinning.main }) },
    kvmUserfault: c.kvmUserfault, write: c.write, samplePages: c.samplePages, timeoutMs: c.timeoutMs,
  }
}

function fromResolvedConfig(m: ResolvedConfigMsg | null): ResolvedDemandPagingConfig {
  if (m === null) throw new MalformedMessage('config: missing')
  return {
    vcpus: m.vcpus, vcpuMemoryBytes: u64From(m.vcpuMemoryBytes, 'config.vcpuMemoryBytes'), backing: m.backing as Backing,
    uffdMode: (m.uffdMode ?? null) as UffdMode | null, singleUffd: m.singleUffd, readersPerUffd: m.readersPerUffd,
    uffdDelayUs: m.uffdDelayUs, overlap: m.overlap,
    pinning: m.pinning === null ? null : { vcpus: [...m.pinning.vcpus], main: m.pinning.main ?? null },
    kvmUserfault: m.kvmUserfault, write: m.write, samplePages: m.samplePages, timeoutMs: m.timeoutMs,
  }
}

function toVcpu(v: DemandPagingVcpuResult, i: number): DemandPagingVcpuMsg {
  const at = `vcpus[${i}]`
  return {
    id: v.id, gpa: u64Out(v.gpa, `${at}.gpa`), pages: v.pages,
    ...(v.outcome.kind === 'synced' ? { syncedNs: u64Out(v.outcome.elapsedNs, `${at}.elapsedNs`) } : { exit: toExit(v.outcome.exit) }),
    ...(v.rate === null ? {} : { rate: v.rate }),
    userfaultExits: v.userfaultExits,
  }
}

function fromVcpu(m: DemandPagingVcpuMsg, i: number): DemandPagingVcpuResult {
  const at = `vcpus[${i}]`
  let outcome: DemandPagingVcpuResult['outcome']
  if (m.outcome === 'syncedNs') outcome = { kind: 'synced', elapsedNs: u64From(m.syncedNs as Wire64, `${at}.elapsedNs`) }
  else if (m.outcome === 'exit') outcome = { kind: 'exit', exit: fromExit(m.exit ?? null) }
  else throw new MalformedMessage(`${at}: no outcome`)
  return { id: m.id, gpa: u64From(m.gpa, `${at}.gpa`), pages: m.pages, outcome, rate: m.rate ?? null, userfaultExits: m.userfaultExits }
}

function toViolation(v: UserfaultExitViolation, i: number): Stats<UserfaultExitViolation> {
  const at = `violations[${i}]`
  return { vcpu: v.vcpu, gpa: u64Out(v.gpa, `${at}.gpa`), size: u64Out(v.size, `${at}.size`), flags: u64Out(v.flags, `${at}.flags`), why: v.why }
}

function fromViolation(m: Stats<UserfaultExitViolation>, i: number): UserfaultExitViolation {
  const at = `violations[${i}]`
  return { vcpu: m.vcpu, gpa: u64From(m.gpa, `${at}.gpa`), size: u64From(m.size, `${at}.size`), flags: u64From(m.flags, `${at}.flags`), why: m.why }
}

export function toDemandPagingResult(r: DemandPagingResult): DemandPagingResultMsg {
  const k = r.kvmUserfault
  return {
    config: toResolvedConfig(r.config),
    region: { slot: r.region.slot, gpa: u64Out(r.region.gpa, 'region.gpa'), size: u64Out(r.region.size, 'region.size'), guestPageSize: r.region.guestPageSize },
    elapsedNs: u64Out(r.elapsedNs, 'elapsedNs'),
    vcpus: r.vcpus.map(toVcpu),
    perVcpuRate: r.perVcpuRate,
    overallRate: r.overallRate,
    uffd: r.uffd === null ? null : { ...r.uffd },
    kvmUserfault: k === null ? null : { ...k, violations: k.violations.map(toViolation) },
    ...(r.pagesWithoutGuestWrite === null ? {} : { pagesWithoutGuestWrite: r.pagesWithoutGuestWrite }),
    samples: r.samples.map((s, i) => ({ gpa: u64Out(s.gpa, `samples[${i}].gpa`), bytes: s.bytes })),
  }
}

export function fromDemandPagingResult(m: DemandPagingResultMsg | null): DemandPagingResult {
  if (m === null) throw new MalformedMessage('demand_paging: missing')
  if (m.region === null) throw new MalformedMessage('demand_paging.region: missing')
  const k = m.kvmUserfault
  return {
    config: fromResolvedConfig(m.config),
    region: { slot: m.region.slot, gpa: u64From(m.region.gpa, 'region.gpa'), size: u64From(m.region.size, 'region.size'), guestPageSize: m.region.guestPageSize },
    elapsedNs: u64From(m.elapsedNs, 'elapsedNs'),
    vcpus: m.vcpus.map(fromVcpu),
    perVcpuRate: m.perVcpuRate,
    overallRate: m.overallRate,
    uffd: m.uffd === null ? null : { ...m.uffd },
    kvmUserfault: k === null ? null : { ...k, violations: k.violations.map(fromViolation) },
    pagesWithoutGuestWrite: m.pagesWithoutGuestWrite ?? null,
    samples: m.samples.map((s, i) => ({ gpa: u64From(s.gpa, `samples[${i}].gpa`), bytes: bytesFrom(s.bytes) })),
  }
}
