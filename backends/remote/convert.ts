// Contract types to and from kvmconf.proto's messages: the remote backend's edge, and with
// convert-vcpu.ts and convert-demand-paging.ts the only place that knows both shapes. Each `toX` has
// its `fromX`, and convert.spec.ts checks every pair with a round-trip property through the real
// protobuf encoding.
//
// Arguments travel exactly as the caller gave them (a number as a double, a bigint as decimal), so the
// hosted backend validates them as it would in-process. Results that are u64 in the kernel go as
// uint64 and are range-checked first: protobufjs would silently wrap -1 or 2^64 into another number.

import type {
  BackendInfo, Backing, Feature, GuestMemfdStat, U64In, UffdEvent, UserspaceMemoryRegion2,
} from '../../harness/backend.ts'
import { HostFault, KvmError, VcpuTimeout } from '../../harness/errors.ts'
import { DemandPagingTimeout, KvmUserfaultUnsupported } from '../../harness/kvm-util/demand-paging.ts'
import type { Limits } from './session.ts'
import type {
  BackendInfoMsg, FailureMsg, IntListMsg, IntMsg, LimitsMsg, RegionMsg, ReplyKind, ReplyMsg, StatMsg, UffdEventMsg, Wire64,
} from './protocol.ts'

/** A message that does not have the shape kvmconf.proto gives it (a peer's bug, or a hostile client). */
export class MalformedMessage extends Error {
  override readonly name = 'MalformedMessage'
}

const U64_MAX = (1n << 64n) - 1n

// ---------------------------------------------------------------------------------------------------
// Scalars

/** A JS number argument, as given: any number. Anything else is the caller's TypeError. */
export function num(v: unknown, field: string): number {
  if (typeof v !== 'number') throw new TypeError(`${field}: ${String(v)} is not a number`)
  return v
}

/** An optional JS number argument. */
export function optNum(v: unknown, field: string): number | undefined {
  return v === undefined ? undefined : num(v, field)
}

/** A U64In argument, as given: a number (any) or a bigint (any size or sign). */
export function toInt(v: U64In, field: string): IntMsg {
  if (typeof v === 'number') return { number: v }
  if (typeof v === 'bigint') return { bigint: v.toString() }
  throw new TypeError(`${field}: ${String(v)} is not a number or a bigint`)
}

export function toOptInt(v: U64In | undefined, field: string): IntMsg | null {
  return v === undefined ? null : toInt(v, field)
}

export function fromInt(m: IntMsg | null | undefined, field: string): U64In {
  const v = fromOptInt(m, field)
  if (v === undefined) throw new MalformedMessage(`${field}: missing`)
  return v
}

export function fromOptInt(m: IntMsg | null | undefined, field: string): U64In | undefined {
  if (m === null || m === undefined) return undefined
  if (m.value === 'number' && typeof m.number === 'number') return m.number
  if (m.value === 'bigint' && typeof m.bigint === 'string' && /^-?\d+$/.test(m.bigint)) return BigInt(m.bigint)
  if (m.value === undefined) return undefined
  throw new MalformedMessage(`${field}: not an integer`)
}

export function toIntList(list: readonly U64In[] | undefined, field: string): IntListMsg | null {
  if (list === undefined) return null
  if (!Array.isArray(list)) throw new TypeError(`${field}: not an array`)
  return { values: list.map((v, i) => toInt(v, `${field}[${i}]`)) }
}

export function fromIntList(m: IntListMsg | null | undefined, field: string): U64In[] | undefined {
  if (m === null || m === undefined) return undefined
  return m.values.map((v, i) => fromInt(v, `${field}[${i}]`))
}

/** A u64 result onto the wire; a value outside [0, 2^64) is refused, never wrapped. */
export function u64Out(v: bigint, field: string): Wire64 {
  if (typeof v !== 'bigint' || v < 0n || v > U64_MAX) throw new RangeError(`${field}: ${String(v)} is not a u64`)
  return v.toString()
}

export function u64From(s: Wire64, field: string): bigint {
  if (typeof s !== 'string' || !/^\d+$/.test(s)) throw new MalformedMessage(`${field}: ${String(s)} is not a u64`)
  return BigInt(s)
}

/** A 32-bit integer result onto the wire (uint32, or int32 when `signed`); never truncated. */
export function int32Out(v: number, field: string, signed = false): number {
  const [lo, hi] = signed ? [-(2 ** 31), 2 ** 31 - 1] : [0, 2 ** 32 - 1]
  if (!Number.isInteger(v) || v < lo || v > hi) throw new RangeError(`${field}: ${String(v)} is not a ${signed ? 'int32' : 'u32'}`)
  return v
}

/** Bytes as the caller's own Uint8Array (not a view into gRPC's pooled Buffer). */
export function bytesFrom(b: Uint8Array): Uint8Array {
  return new Uint8Array(b)
}

export function bytesArg(v: unknown, field: string): Uint8Array {
  if (!(v instanceof Uint8Array)) throw new TypeError(`${field}: not a Uint8Array`)
  return v
}

export function optBytesArg(v: unknown, field: string): Uint8Array | undefined {
  return v === undefined ? undefined : bytesArg(v, field)
}

// ---------------------------------------------------------------------------------------------------
// BackendInfo and limits

export function toLimits(l: Limits): LimitsMsg {
  return { vms: int32Out(l.vms, 'vms'), vcpus: int32Out(l.vcpus, 'vcpus'), memoryBytes: u64Out(l.memoryBytes, 'memoryBytes'),
    handles: int32Out(l.handles, 'handles') }
}

export function fromLimits(m: LimitsMsg | null): Limits {
  if (m === null) throw new MalformedMessage('limits: missing')
  return { vms: m.vms, vcpus: m.vcpus, memoryBytes: u64From(m.memoryBytes, 'memoryBytes'), handles: m.handles }
}

export function toBackendInfo(info: BackendInfo): BackendInfoMsg {
  return {
    kernelRelease: info.kernelRelease,
    arch: info.arch,
    pageSize: int32Out(info.pageSize, 'pageSize'),
    ...(info.profile === null ? {} : { profile: info.profile }),
    backings: [...info.backings],
    features: [...info.features],
    host: info.host,
  }
}

export function fromBackendInfo(m: BackendInfoMsg | null): BackendInfo {
  if (m === null) throw new MalformedMessage('info: missing')
  return {
    kernelRelease: m.kernelRelease,
    arch: m.arch,
    pageSize: m.pageSize,
    profile: m.profile ?? null,
    backings: m.backings as Backing[],
    features: m.features as Feature[],
    host: m.host,
  }
}

// ---------------------------------------------------------------------------------------------------
// Memory regions (struct kvm_userspace_memory_region2; the legacy struct is its first five fields)

export function toRegion(r: UserspaceMemoryRegion2): RegionMsg {
  return {
    slot: num(r.slot, 'slot'),
    flags: num(r.flags, 'flags'),
    guestPhysAddr: toInt(r.guestPhysAddr, 'guestPhysAddr'),
    memorySize: toInt(r.memorySize, 'memorySize'),
    userspaceAddr: toInt(r.userspaceAddr, 'userspaceAddr'),
    guestMemfdOffset: toOptInt(r.guestMemfdOffset, 'guestMemfdOffset'),
    guestMemfd: optNum(r.guestMemfd, 'guestMemfd'),
    pad1: optNum(r.pad1, 'pad1'),
    userfaultBitmap: toOptInt(r.userfaultBitmap, 'userfaultBitmap'),
    pad2: toIntList(r.pad2, 'pad2'),
  }
}

export function fromRegion(m: RegionMsg | null): UserspaceMemoryRegion2 {
  if (m === null) throw new MalformedMessage('region: missing')
  const r: UserspaceMemoryRegion2 = {
    slot: m.slot,
    flags: m.flags,
    guestPhysAddr: fromInt(m.guestPhysAddr, 'guestPhysAddr'),
    memorySize: fromInt(m.memorySize, 'memorySize'),
    userspaceAddr: fromInt(m.userspaceAddr, 'userspaceAddr'),
  }
  const guestMemfdOffset = fromOptInt(m.guestMemfdOffset, 'guestMemfdOffset')
  if (guestMemfdOffset !== undefined) r.guestMemfdOffset = guestMemfdOffset
  if (m.guestMemfd !== undefined) r.guestMemfd = m.guestMemfd
  if (m.pad1 !== undefined) r.pad1 = m.pad1
  const userfaultBitmap = fromOptInt(m.userfaultBitmap, 'userfaultBitmap')
  if (userfaultBitmap !== undefined) r.userfaultBitmap = userfaultBitmap
  const pad2 = fromIntList(m.pad2, 'pad2')
  if (pad2 !== undefined) r.pad2 = pad2
  return r
}
// ---------------------------------------------------------------------------------------------------
// Small results

export function toStat(s: GuestMemfdStat): StatMsg {
  return { size: u64Out(s.size, 'size'), blockSize: int32Out(s.blockSize, 'blockSize'), ino: u64Out(s.ino, 'ino') }
}

export function fromStat(m: StatMsg | null): GuestMemfdStat {
  if (m === null) throw new MalformedMessage('stat: missing')
  return { size: u64From(m.size, 'size'), blockSize: m.blockSize, ino: u64From(m.ino, 'ino') }
}
export function toMismatch(offset: bigint): { offset?: Wire64 } {
  return offset === -1n ? {} : { offset: u64Out(offset, 'offset') }
}

export function fromMismatch(m: { offset?: Wire64 | undefined } | null): bigint {
  if (m === null) throw new MalformedMessage('mismatch: missing')
  return m.offset === undefined ? -1n : u64From(m.offset, 'offset')
}

export function toWords(words: BigUint64Array): { values: Wire64[] } {
  return { values: Array.from(words, (w) => w.toString()) }
}

export function fromWords(m: { values: Wire64[] } | null): BigUint64Array {
  if (m === null) throw new MalformedMessage('words: missing')
  return BigUint64Array.from(m.values.map((w, i) => u64From(w, `words[${i}]`)))
}

export function toUffdEvents(events: UffdEvent[]): { events: UffdEventMsg[] } {
  return {
    events: events.map((e, i) => e.kind === 'pagefault'
      ? { pagefault: { address: u64Out(e.address, `events[${i}].address`), flags: u64Out(e.flags, `events[${i}].flags`) } }
      : { other: int32Out(e.event, `events[${i}].event`) }),
  }
}

export function fromUffdEvents(m: { events: UffdEventMsg[] } | null): UffdEvent[] {
  if (m === null) throw new MalformedMessage('events: missing')
  return m.events.map((e, i): UffdEvent => {
    if (e.kind === 'pagefault') {
      return { kind: 'pagefault', address: u64From(e.pagefault.address, `events[${i}].address`), flags: u64From(e.pagefault.flags, `events[${i}].flags`) }
    }
    if (e.kind === 'other') return { kind: 'other', event: e.other }
    throw new MalformedMessage(`events[${i}]: no kind`)
  })
}

// ---------------------------------------------------------------------------------------------------
// Failures: every typed error the hosted backend throws comes back as the same typed value

const PLAIN_ERRORS = new Map<string, new (message: string) => Error>(
  [Error, TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError].map((c) => [c.name, c]),
)

/** The Failure a thrown value becomes on the agent. */
export function toFailure(e: unknown): FailureMsg {
  if (KvmError.is(e)) {
    return { kvmError: { code: String(e.code), errno: int32Out(e.errno, 'errno', true), op: e.op, message: e.message } }
  }
  if (HostFault.is(e)) return { hostFault: { code: e.code, op: e.op, address: u64Out(e.address, 'address'), message: e.message } }
  if (VcpuTimeout.is(e)) return { vcpuTimeout: { timeoutMs: e.timeoutMs, message: e.message } }
  if (DemandPagingTimeout.is(e)) {
    return { demandPagingTimeout: { timeoutMs: e.timeoutMs, vcpusSynced: e.vcpusSynced, vcpus: e.vcpus, message: e.message } }
  }
  if (KvmUserfaultUnsupported.is(e)) return { kvmUserfaultUnsupported: { code: e.code, op: e.op, message: e.message } }
  if (e instanceof Error) return { plain: { name: e.name, message: e.message } }
  return { plain: { name: 'Error', message: String(e) } }
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] }

/** The error a Failure stands for on the client: the same class, with the same fields and message. */
export function fromFailure(m: FailureMsg): Error {
  switch (m.error) {
    case 'kvmError': {
      const k = m.kvmError
      const e = new KvmError(k.errno, k.op) as Mutable<KvmError>
      e.code = k.code
      e.message = k.message
      return e
    }
    case 'hostFault': {
      const h = m.hostFault
      if (h.code !== 'SIGBUS' && h.code !== 'SIGSEGV') throw new MalformedMessage(`host_fault.code: ${h.code}`)
      const e = new HostFault(h.code, h.op, u64From(h.address, 'host_fault.address'))
      e.message = h.message
      return e
    }
    case 'vcpuTimeout': {
      const e = new VcpuTimeout('KVM_RUN', m.vcpuTimeout.timeoutMs)
      e.message = m.vcpuTimeout.message
      return e
    }
    case 'demandPagingTimeout': {
      const t = m.demandPagingTimeout
      const e = new DemandPagingTimeout(t.timeoutMs, t.vcpusSynced, t.vcpus)
      e.message = t.message
      return e
    }
    case 'kvmUserfaultUnsupported': {
      const k = m.kvmUserfaultUnsupported
      const e = new KvmUserfaultUnsupported(k.code, k.op)
      e.message = k.message
      return e
    }
    case 'plain': {
      const { name, message } = m.plain
      const e = new (PLAIN_ERRORS.get(name) ?? Error)(message)
      if (e.name !== name) e.name = name
      return e
    }
    default:
      throw new MalformedMessage('failure: no error')
  }
}

/** A Reply's value of the kind the call answers, or the Failure it carries thrown as its typed error. */
export function fromReply<K extends ReplyKind>(reply: ReplyMsg, kind: K): NonNullable<ReplyMsg[K]> {
  if (reply.result === 'failure' && reply.failure) throw fromFailure(reply.failure)
  const value = reply[kind]
  if (reply.result !== kind || value === null || value === undefined) {
    throw new MalformedMessage(`expected a '${kind}' reply, got '${String(reply.result)}'`)
  }
  return value as NonNullable<ReplyMsg[K]>
}
