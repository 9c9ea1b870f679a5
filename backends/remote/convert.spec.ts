// Round-trip properties of every converter in convert.ts and convert-demand-paging.ts, through the real
// protobuf encoding of the Session stream's messages: from(decode(encode(to(x)))) = x, u64s over their
// full range, arguments over every JS number and bigint. A failing property prints its seed and path.

import fc from 'fast-check'
import type { MethodDefinition } from '@grpc/grpc-js'
import { describe, expect, test } from 'vitest'

import type {
  BackendInfo, GuestMemfdStat, PreFaultResult, RunOptions, U64In, UffdEvent, UserspaceMemoryRegion2, VcpuExit,
} from '../../harness/backend.ts'
import type { DemandPagingConfig, DemandPagingResult } from '../../harness/demand-paging-types.ts'
import { HostFault, KvmError, VcpuTimeout } from '../../harness/errors.ts'
import type { GuestStep } from '../../harness/guest-program.ts'
import { DemandPagingTimeout, KvmUserfaultUnsupported } from '../../harness/kvm-util/demand-paging.ts'
import {
  fromBackendInfo, fromInt, fromIntList, fromLimits, fromMismatch, fromRegion, fromReply, fromStat, fromUffdEvents, fromWords, toBackendInfo, toFailure, toInt, toIntList, toLimits, toMismatch, toRegion, toStat, toUffdEvents, toWords, u64Out,
} from './convert.ts'
import { fromExit, fromPreFault, fromProgram, fromProgramStep, fromRunOptions, toExit, toPreFault, toProgram, toProgramStep, toRunOptions } from './convert-vcpu.ts'
import {
  fromDemandPagingConfig, fromDemandPagingResult, toDemandPagingConfig, toDemandPagingResult,
} from './convert-demand-paging.ts'
import { AGENT_SERVICE, type ReplyMsg } from './protocol.ts'
import type { Limits } from './session.ts'

const SESSION = AGENT_SERVICE.Session as MethodDefinition<object, object>

/** A request body, as the agent decodes it after the client encoded it inside a Call. */
function overTheWire(member: string, body: object): any {
  const bytes = SESSION.requestSerialize({ call: { id: '7', deadlineMs: 1000, [member]: body } })
  return (SESSION.requestDeserialize(bytes) as { call: Record<string, unknown> }).call[member]
}

/** A Reply, as the client decodes it after the agent encoded it inside a Result. */
function replyOverTheWire(reply: ReplyMsg): ReplyMsg {
  const bytes = SESSION.responseSerialize({ result: { id: '7', reply } })
  return (SESSION.responseDeserialize(bytes) as { result: { reply: ReplyMsg } }).result.reply
}

const U64_MAX = (1n << 64n) - 1n
const u64 = fc.bigInt({ min: 0n, max: U64_MAX })
const u32 = fc.integer({ min: 0, max: 0xffff_ffff })
const bytes = fc.uint8Array({ maxLength: 64 })
/** An argument as a test may pass one: any JS number (NaN, -0, ±Infinity included) or any bigint. */
const anyInt: fc.Arbitrary<U64In> = fc.oneof(fc.double(), fc.integer(), fc.bigInt(), u64)
const anyNumber = fc.oneof(fc.double(), fc.integer())
const opt = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined })

/** Object.is on numbers, so that -0 and NaN must survive too. */
function sameArg(a: unknown, b: unknown): void {
  if (typeof a === 'number') expect(Object.is(a, b), `${String(a)} came back as ${String(b)}`).toBe(true)
  else expect(b).toEqual(a)
}

describe('arguments travel exactly as given', () => {
  test('property: an Int (any number, any bigint) round-trips', () => {
    fc.assert(fc.property(anyInt, (v) => {
      sameArg(v, fromInt(overTheWire('mmap', { size: toInt(v, 'size'), backing: 'anonymous' }).size, 'size'))
    }))
  })

  test('property: an IntList keeps undefined apart from []', () => {
    fc.assert(fc.property(opt(fc.array(anyInt, { maxLength: 8 })), (list) => {
      const args = overTheWire('vmEnableCap', { handle: '1', cap: 1, args: toIntList(list, 'args') }).args
      const back = fromIntList(args, 'args')
      if (list === undefined) expect(back).toBeUndefined()
      else {
        expect(back).toHaveLength(list.length)
        list.forEach((v, i) => sameArg(v, back?.[i]))
      }
    }))
  })

  test('property: struct kvm_userspace_memory_region2 round-trips, absent fields absent', () => {
    const region: fc.Arbitrary<UserspaceMemoryRegion2> = fc.record({
      slot: anyNumber, flags: anyNumber, guestPhysAddr: anyInt, memorySize: anyInt, userspaceAddr: anyInt,
      guestMemfdOffset: anyInt, guestMemfd: anyNumber, pad1: anyNumber, userfaultBitmap: anyInt,
      pad2: fc.array(anyInt, { maxLength: 13 }),
    }, { requiredKeys: ['slot', 'flags', 'guestPhysAddr', 'memorySize', 'userspaceAddr'] })
    fc.assert(fc.property(region, (r) => {
      const back = fromRegion(overTheWire('vmSetUserMemoryRegion2', { handle: '1', region: toRegion(r) }).region)
      expect(Object.keys(back).sort()).toEqual(Object.keys(r).sort())
      for (const k of Object.keys(r) as (keyof UserspaceMemoryRegion2)[]) {
        if (k === 'pad2') r.pad2?.forEach((v, i) => sameArg(v, back.pad2?.[i]))
        else sameArg(r[k], back[k])
      }
    }))
  })

  test('property: a guest program round-trips step for step', () => {
    const width = fc.constantFrom(1 as const, 2 as const, 4 as const, 8 as const)
    const step: fc.Arbitrary<GuestStep> = fc.oneof(
      fc.record({ op: fc.constant('write' as const), gva: anyInt, value: anyInt, width, expectFault: fc.boolean() },
        { requiredKeys: ['op', 'gva'] }),
      fc.record({ op: fc.constant('read' as const), gva: anyInt, width, expectFault: fc.boolean() }, { requiredKeys: ['op', 'gva'] }),
      fc.record({ op: fc.constant('spin_while_eq' as const), gva: anyInt, value: anyInt }),
      fc.record({ op: fc.constant('signal' as const), port: anyNumber, value: anyInt }, { requiredKeys: ['op', 'port'] }),
      fc.record({ op: fc.constant('touch_pages' as const), gva: anyInt, pages: anyNumber, stride: anyNumber, write: fc.boolean(), value: anyInt }),
      fc.record({ op: fc.constant('fill' as const), gva: anyInt, length: anyNumber, byte: anyNumber }),
      fc.record({ op: fc.constant('check' as const), gva: anyInt, length: anyNumber, byte: anyNumber }),
      fc.record({ op: fc.constant('lidt' as const), base: anyInt, limit: anyNumber }),
      fc.record({ op: fc.constant('jump' as const), to: anyNumber }),
      fc.constant({ op: 'hlt' as const }),
    )
    fc.assert(fc.property(fc.array(step, { maxLength: 12 }), (steps) => {
      const back = fromProgram(overTheWire('vcpuLoadProgram', { handle: '1', steps: toProgram({ steps }) }).steps)
      expect(back.steps).toHaveLength(steps.length)
      steps.forEach((s, i) => {
        const b = back.steps[i] as unknown as Record<string, unknown>
        expect(Object.keys(b).sort()).toEqual(Object.keys(s).sort())
        for (const [k, v] of Object.entries(s)) sameArg(v, b[k])
      })
    }))
  })

  test('property: KVM_RUN options round-trip, absent data absent', () => {
    const options: fc.Arbitrary<RunOptions> = fc.record({ timeoutMs: anyNumber, mmioData: bytes, ioData: bytes }, { requiredKeys: [] })
    fc.assert(fc.property(options, (o) => {
      const back = fromRunOptions(overTheWire('vcpuRun', { handle: '1', ...toRunOptions(o) }))
      expect(Object.keys(back).sort()).toEqual(Object.keys(o).sort())
      if (o.timeoutMs !== undefined) sameArg(o.timeoutMs, back.timeoutMs)
      expect(back.mmioData).toEqual(o.mmioData)
      expect(back.ioData).toEqual(o.ioData)
    }))
  })

  test('property: a demand-paging config round-trips, null apart from undefined', () => {
    const config: fc.Arbitrary<DemandPagingConfig> = fc.record({
      vcpus: fc.integer({ min: 0, max: 64 }), vcpuMemoryBytes: anyInt, backing: fc.constantFrom('anonymous' as const, 'shmem' as const),
      uffdMode: fc.constantFrom(null, 'MISSING' as const, 'MINOR' as const), singleUffd: fc.boolean(),
      readersPerUffd: anyNumber, uffdDelayUs: anyNumber, overlap: fc.boolean(),
      pinning: fc.option(fc.record({ vcpus: fc.array(fc.nat(), { maxLength: 4 }), main: fc.nat() }, { requiredKeys: ['vcpus'] }), { nil: null }),
      kvmUserfault: fc.boolean(), write: fc.boolean(), samplePages: anyNumber, timeoutMs: anyNumber,
    }, { requiredKeys: [] })
    fc.assert(fc.property(config, (c) => {
      const back = fromDemandPagingConfig(overTheWire('runDemandPaging', toDemandPagingConfig(c)))
      expect(Object.keys(back).sort()).toEqual(Object.keys(c).sort())
      for (const [k, v] of Object.entries(c)) sameArg(v, (back as Record<string, unknown>)[k])
    }))
  })
})

describe('results come back as the same values', () => {
  const exit: fc.Arbitrary<VcpuExit> = fc.oneof(
    fc.record({ kind: fc.constant('io' as const), port: fc.integer({ min: 0, max: 0xffff }), size: fc.constantFrom(1, 2, 4),
      direction: fc.constantFrom('in' as const, 'out' as const), count: u32, data: bytes }),
    fc.record({ kind: fc.constant('mmio' as const), physAddr: u64, len: fc.integer({ min: 0, max: 8 }), isWrite: fc.boolean(), data: bytes }),
    fc.constantFrom({ kind: 'hlt' as const }, { kind: 'shutdown' as const }, { kind: 'intr' as const }),
    fc.record({ kind: fc.constant('internal_error' as const), suberror: u32, data: fc.array(u64, { maxLength: 16 }) }),
    fc.record({ kind: fc.constant('memory_fault' as const), errno: fc.constantFrom('EFAULT' as const, 'EHWPOISON' as const),
      flags: u64, gpa: u64, size: u64 }),
    fc.record({ kind: fc.constant('fail_entry' as const), reason: u64 }),
    fc.record({ kind: fc.constant('other' as const), exitReason: u32 }),
  )

  test('property: every VcpuExit round-trips', () => {
    fc.assert(fc.property(exit, (e) => {
      expect(fromExit(fromReply(replyOverTheWire({ exit: toExit(e) }), 'exit'))).toEqual(e)
    }))
  })

  test('property: KVM_PRE_FAULT_MEMORY results round-trip', () => {
    const result: fc.Arbitrary<PreFaultResult> = fc.oneof(
      fc.record({ ok: fc.constant(true as const), gpa: u64, size: u64 }),
      fc.record({ ok: fc.constant(false as const), error: fc.record({ code: fc.constantFrom('EINVAL', 'ENOENT', 'EOPNOTSUPP', 'E999'),
        errno: fc.integer({ min: 1, max: 4095 }) }), gpa: u64, size: u64 }),
    )
    fc.assert(fc.property(result, (r) => {
      expect(fromPreFault(fromReply(replyOverTheWire({ preFault: toPreFault(r) }), 'preFault'))).toEqual(r)
    }))
  })

  test('property: stat, program step, mismatch, words, uffd events, limits and info round-trip', () => {
    const stat: fc.Arbitrary<GuestMemfdStat> = fc.record({ size: u64, blockSize: u32, ino: u64 })
    const step = fc.oneof(u32, fc.constantFrom('halt' as const, null))
    const mismatch = fc.oneof(u64, fc.constant(-1n))
    const words = fc.array(u64, { maxLength: 32 }).map((w) => BigUint64Array.from(w))
    const events: fc.Arbitrary<UffdEvent[]> = fc.array(fc.oneof(
      fc.record({ kind: fc.constant('pagefault' as const), address: u64, flags: u64 }),
      fc.record({ kind: fc.constant('other' as const), event: u32 }),
    ), { maxLength: 8 })
    const limits: fc.Arbitrary<Limits> = fc.record({ vms: u32, vcpus: u32, memoryBytes: u64, handles: u32 })
    const info: fc.Arbitrary<BackendInfo> = fc.record({
      kernelRelease: fc.string(), arch: fc.string(), pageSize: u32, profile: fc.option(fc.string(), { nil: null }),
      backings: fc.subarray(['anonymous', 'anonymous_thp', 'anonymous_hugetlb', 'shmem', 'shared_hugetlb'] as const).map((b) => [...b]),
      features: fc.subarray(['vcpu', 'userfaultfd', 'host-faults', 'demand-paging'] as const).map((f) => [...f]),
      host: fc.string(),
    })
    fc.assert(fc.property(stat, step, mismatch, words, events, fc.tuple(limits, limits), (st, sp, mm, ws, ev, [l, u]) => {
      expect(fromStat(fromReply(replyOverTheWire({ stat: toStat(st) }), 'stat'))).toEqual(st)
      expect(fromProgramStep(fromReply(replyOverTheWire({ step: toProgramStep(sp) }), 'step'))).toEqual(sp)
      expect(fromMismatch(fromReply(replyOverTheWire({ mismatch: toMismatch(mm) }), 'mismatch'))).toBe(mm)
      expect(fromWords(fromReply(replyOverTheWire({ words: toWords(ws) }), 'words'))).toEqual(ws)
      expect(fromUffdEvents(fromReply(replyOverTheWire({ events: toUffdEvents(ev) }), 'events'))).toEqual(ev)
      const usage = fromReply(replyOverTheWire({ usage: { limits: toLimits(l), used: toLimits(u) } }), 'usage')
      expect([fromLimits(usage.limits), fromLimits(usage.used)]).toEqual([l, u])
    }))
    fc.assert(fc.property(info, (i) => {
      const bytes = SESSION.responseSerialize({ handshake: { info: toBackendInfo(i) } })
      const back = (SESSION.responseDeserialize(bytes) as { handshake: { info: never } }).handshake.info
      expect(fromBackendInfo(back)).toEqual(i)
    }))
  })

  test('property: a demand-paging result round-trips', () => {
    const exitArb = exit
    const vcpu = fc.record({
      id: fc.nat(), gpa: u64, pages: fc.nat(),
      outcome: fc.oneof(fc.record({ kind: fc.constant('synced' as const), elapsedNs: u64 }), fc.record({ kind: fc.constant('exit' as const), exit: exitArb })),
      rate: fc.option(fc.double({ noNaN: true }), { nil: null }), userfaultExits: fc.nat(),
    })
    const stats = fc.record({
      uffds: fc.nat(), readersPerUffd: fc.nat(), unitBytes: fc.nat(), units: fc.nat(), faults: fc.nat(), resolved: fc.nat(),
      eexist: fc.nat(), wakes: fc.nat(), unitsResolvedOnce: fc.nat(), unitsResolvedMoreThanOnce: fc.nat(), unitsNeverResolved: fc.nat(),
    })
    const violation = fc.record({ vcpu: fc.nat(), gpa: u64, size: u64, flags: u64,
      why: fc.constantFrom('flags' as const, 'gpa not page aligned' as const, 'size' as const, 'outside the region' as const) })
    const result: fc.Arbitrary<DemandPagingResult> = fc.record({
      config: fc.record({
        vcpus: fc.nat(), vcpuMemoryBytes: u64, backing: fc.constantFrom('anonymous' as const, 'shmem' as const),
        uffdMode: fc.constantFrom(null, 'MISSING' as const, 'MINOR' as const), singleUffd: fc.boolean(), readersPerUffd: fc.nat(),
        uffdDelayUs: fc.nat(), overlap: fc.boolean(),
        pinning: fc.option(fc.record({ vcpus: fc.array(fc.nat(), { maxLength: 4 }), main: fc.option(fc.nat(), { nil: null }) }), { nil: null }),
        kvmUserfault: fc.boolean(), write: fc.boolean(), samplePages: fc.nat(), timeoutMs: fc.nat(),
      }),
      region: fc.record({ slot: fc.nat(), gpa: u64, size: u64, guestPageSize: fc.nat() }),
      elapsedNs: u64,
      vcpus: fc.array(vcpu, { maxLength: 4 }),
      perVcpuRate: fc.double({ noNaN: true }),
      overallRate: fc.double({ noNaN: true }),
      uffd: fc.option(stats, { nil: null }),
      kvmUserfault: fc.option(fc.record({ exits: fc.nat(), pagesWithExit: fc.nat(), pagesWithMoreThanOneExit: fc.nat(),
        violations: fc.array(violation, { maxLength: 4 }), violationCount: fc.nat() }), { nil: null }),
      pagesWithoutGuestWrite: fc.option(fc.nat(), { nil: null }),
      samples: fc.array(fc.record({ gpa: u64, bytes }), { maxLength: 4 }),
    })
    fc.assert(fc.property(result, (r) => {
      expect(fromDemandPagingResult(fromReply(replyOverTheWire({ demandPaging: toDemandPagingResult(r) }), 'demandPaging'))).toEqual(r)
    }))
  })

  test('a u64 result that does not fit is refused, never wrapped', () => {
    fc.assert(fc.property(fc.oneof(fc.bigInt({ max: -1n }), fc.bigInt({ min: U64_MAX + 1n })), (v) => {
      expect(() => u64Out(v, 'x')).toThrow(RangeError)
    }))
    expect(() => toExit({ kind: 'mmio', physAddr: -1n, len: 8, isWrite: false, data: new Uint8Array(8) })).toThrow(/mmio\.physAddr: -1 is not a u64/)
    expect(() => toExit({ kind: 'io', port: 2 ** 32, size: 4, direction: 'out', count: 1, data: new Uint8Array(4) })).toThrow(/io\.port/)
  })
})

describe('errors come back as the same typed values', () => {
  const roundTrip = (e: unknown) => {
    const reply = replyOverTheWire({ failure: toFailure(e) })
    try {
      fromReply(reply, 'done')
    } catch (back) {
      return back as Error
    }
    throw new Error('fromReply did not throw the failure')
  }

  test('property: KvmError keeps code, errno, op and message, and KvmError.is() holds', () => {
    const code = fc.oneof(fc.constantFrom('EINVAL', 'EEXIST', 'EBADF', 'ENOSYS', 'EFAULT'), fc.integer({ min: 1, max: 4095 }))
    fc.assert(fc.property(code, fc.string(), fc.option(fc.string(), { nil: undefined }), (c, op, detail) => {
      const e = new KvmError(c as never, op, detail)
      const back = roundTrip(e)
      expect(KvmError.is(back)).toBe(true)
      expect(back).toBeInstanceOf(KvmError)
      expect(back).toMatchObject({ name: 'KvmError', code: e.code, errno: e.errno, op: e.op, message: e.message })
    }))
  })

  test('property: HostFault keeps code, op and the full 64-bit address', () => {
    fc.assert(fc.property(fc.constantFrom('SIGBUS' as const, 'SIGSEGV' as const), fc.string(), u64, (c, op, address) => {
      const back = roundTrip(new HostFault(c, op, address))
      expect(HostFault.is(back)).toBe(true)
      expect(back).toMatchObject({ name: 'HostFault', code: c, op, address, message: new HostFault(c, op, address).message })
    }))
  })

  test('property: VcpuTimeout, DemandPagingTimeout and KvmUserfaultUnsupported keep their fields', () => {
    fc.assert(fc.property(fc.string(), fc.nat(), fc.nat(), fc.nat(), (op, t, synced, vcpus) => {
      const vt = roundTrip(new VcpuTimeout(op, t))
      expect(VcpuTimeout.is(vt)).toBe(true)
      expect(vt).toMatchObject({ code: 'ETIMEDOUT', timeoutMs: t, message: new VcpuTimeout(op, t).message })
      const dt = roundTrip(new DemandPagingTimeout(t, synced, vcpus))
      expect(DemandPagingTimeout.is(dt)).toBe(true)
      expect(dt).toMatchObject({ timeoutMs: t, vcpusSynced: synced, vcpus, message: new DemandPagingTimeout(t, synced, vcpus).message })
      const ku = roundTrip(new KvmUserfaultUnsupported('EINVAL', op))
      expect(KvmUserfaultUnsupported.is(ku)).toBe(true)
      expect(ku).toMatchObject({ code: 'EINVAL', op, message: new KvmUserfaultUnsupported('EINVAL', op).message })
    }))
  })

  test('property: TypeError and RangeError stay what they are; other errors keep their name', () => {
    const error = fc.oneof(
      fc.string().map((m) => new TypeError(m)),
      fc.string().map((m) => new RangeError(m)),
      fc.tuple(fc.string().filter((n) => !/^(Type|Range|Syntax|Reference|Eval|URI)?Error$/.test(n)), fc.string())
        .map(([n, m]) => Object.assign(new Error(m), { name: n || 'Error' })),
    )
    fc.assert(fc.property(error, (e) => {
      const back = roundTrip(e)
      expect(back.constructor).toBe(e.constructor === Error ? Error : e.constructor)
      expect({ name: back.name, message: back.message }).toEqual({ name: e.name, message: e.message })
    }))
  })
})
