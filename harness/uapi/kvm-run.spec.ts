// struct kvm_run: the header and exit-union offsets pinned with literals (§0.4), decodeKvmRunExit on
// bytes written by hand, and the exit encoder/decoder round trip.

import { describe, test, expect } from 'vitest'
import fc from 'fast-check'
import {
  KVM_EXIT_FAIL_ENTRY, KVM_EXIT_HLT, KVM_EXIT_INTERNAL_ERROR, KVM_EXIT_IO, KVM_EXIT_IO_OUT, KVM_EXIT_MEMORY_FAULT,
  KVM_EXIT_MMIO, KVM_MEMORY_EXIT_FLAG_PRIVATE,
} from './kvm.ts'
import { KVM_MEMORY_EXIT_FLAG_USERFAULT } from './series.ts'
import {
  decodeKvmRunExit, encodeKvmRunExit, KVM_RUN_EXIT_UNION_OFFSET, KVM_RUN_EXIT_UNION_SIZE, kvm_run, kvm_run_fail_entry,
  kvm_run_internal, kvm_run_io, kvm_run_memory_fault, kvm_run_mmio, writeKvmRunExit, type KvmRunExit,
} from './kvm-run.ts'
import { decodeStruct, encodeStruct, type StructLayout } from './layout.ts'
import { structArbitrary } from './layout-arbitrary.ts'

function table(layout: StructLayout): Record<string, (number | string)[]> {
  return Object.fromEntries(Object.entries(layout.fields).map(([k, f]) =>
    [k, f.count === undefined ? [f.offset, f.type] : [f.offset, f.type, f.count]]))
}

describe('kvm_run layout', () => {
  test('header: bytes 0..31, the exit union at 32..287', () => {
    expect([KVM_RUN_EXIT_UNION_OFFSET, KVM_RUN_EXIT_UNION_SIZE, kvm_run.size]).toEqual([32, 256, 288])
    expect(table(kvm_run)).toEqual({
      requestInterruptWindow: [0, 'u8'], immediateExit: [1, 'u8'], padding1: [2, 'u8', 6], exitReason: [8, 'u32'],
      readyForInterruptInjection: [12, 'u8'], ifFlag: [13, 'u8'], flags: [14, 'u16'], cr8: [16, 'u64'],
      apicBase: [24, 'u64'],
    })
  })

  test('io: direction 32, size 33, port 34, count 36, data_offset 40', () => {
    expect(table(kvm_run_io)).toEqual({
      direction: [32, 'u8'], size: [33, 'u8'], port: [34, 'u16'], count: [36, 'u32'], dataOffset: [40, 'u64'],
    })
  })

  test('mmio: phys_addr 32, data[8] 40, len 48, is_write 52', () => {
    expect(table(kvm_run_mmio)).toEqual({ physAddr: [32, 'u64'], data: [40, 'u8', 8], len: [48, 'u32'], isWrite: [52, 'u8'] })
  })

  test('internal: suberror 32, ndata 36, data[16] 40', () => {
    expect(table(kvm_run_internal)).toEqual({ suberror: [32, 'u32'], ndata: [36, 'u32'], data: [40, 'u64', 16] })
  })

  test('memory_fault: flags 32, gpa 40, size 48', () => {
    expect(table(kvm_run_memory_fault)).toEqual({ flags: [32, 'u64'], gpa: [40, 'u64'], size: [48, 'u64'] })
  })

  test('fail_entry: hardware_entry_failure_reason 32, cpu 40', () => {
    expect(table(kvm_run_fail_entry)).toEqual({ hardwareEntryFailureReason: [32, 'u64'], cpu: [40, 'u32'] })
  })

  test('every union view stays inside the union and spans the same 288 bytes', () => {
    for (const view of [kvm_run_io, kvm_run_mmio, kvm_run_internal, kvm_run_memory_fault, kvm_run_fail_entry]) {
      expect(view.size, view.name).toBe(288)
      for (const f of Object.values(view.fields as StructLayout['fields'])) expect(f.offset).toBeGreaterThanOrEqual(32)
    }
  })

  test('property: header round trip', () => {
    fc.assert(fc.property(structArbitrary(kvm_run), (x) => {
      expect(decodeStruct(kvm_run, encodeStruct(kvm_run, x))).toEqual(x)
    }))
  })
})

describe('decodeKvmRunExit', () => {
  function run(exitReason: number): [Uint8Array, DataView] {
    const bytes = new Uint8Array(4096)
    const view = new DataView(bytes.buffer)
    view.setUint32(8, exitReason, true)
    return [bytes, view]
  }

  test('a userfault memory_fault exit as the series reports it (§F.3)', () => {
    const [bytes, view] = run(KVM_EXIT_MEMORY_FAULT)
    view.setBigUint64(32, KVM_MEMORY_EXIT_FLAG_USERFAULT | KVM_MEMORY_EXIT_FLAG_PRIVATE, true)
    view.setBigUint64(40, 0x1_2345_6000n, true)
    view.setBigUint64(48, 4096n, true)
    expect(decodeKvmRunExit(bytes)).toEqual({
      kind: 'memory_fault', exitReason: 39, memoryFault: { flags: 24n, gpa: 0x1_2345_6000n, size: 4096n },
    })
  })

  test('io', () => {
    const [bytes, view] = run(KVM_EXIT_IO)
    view.setUint8(32, KVM_EXIT_IO_OUT)
    view.setUint8(33, 4)
    view.setUint16(34, 0x3f8, true)
    view.setUint32(36, 1, true)
    view.setBigUint64(40, 4096n, true)
    expect(decodeKvmRunExit(bytes)).toEqual({
      kind: 'io', exitReason: 2, io: { direction: 1, size: 4, port: 0x3f8, count: 1, dataOffset: 4096n },
    })
  })

  test('mmio', () => {
    const [bytes, view] = run(KVM_EXIT_MMIO)
    view.setBigUint64(32, 0xfee0_0000n, true)
    bytes.set([1, 2, 3, 4, 5, 6, 7, 8], 40)
    view.setUint32(48, 4, true)
    view.setUint8(52, 1)
    expect(decodeKvmRunExit(bytes)).toEqual({
      kind: 'mmio', exitReason: 6, mmio: { physAddr: 0xfee0_0000n, data: new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]), len: 4, isWrite: 1 },
    })
  })

  test('internal error', () => {
    const [bytes, view] = run(KVM_EXIT_INTERNAL_ERROR)
    view.setUint32(32, 3, true)
    view.setUint32(36, 2, true)
    view.setBigUint64(40, 0xaan, true)
    view.setBigUint64(48, 0xbbn, true)
    view.setBigUint64(40 + 15 * 8, 0xffn, true)
    const exit = decodeKvmRunExit(bytes)
    expect(exit).toMatchObject({ kind: 'internal_error', exitReason: 17, internal: { suberror: 3, ndata: 2 } })
    expect(exit.kind === 'internal_error' && exit.internal.data).toEqual([0xaan, 0xbbn, ...Array(13).fill(0n), 0xffn])
  })

  test('fail entry', () => {
    const [bytes, view] = run(KVM_EXIT_FAIL_ENTRY)
    view.setBigUint64(32, 0x8000_0021n, true)
    view.setUint32(40, 3, true)
    expect(decodeKvmRunExit(bytes)).toEqual({
      kind: 'fail_entry', exitReason: 9, failEntry: { hardwareEntryFailureReason: 0x8000_0021n, cpu: 3 },
    })
  })

  test('a reason without a decoded member is `other`', () => {
    expect(decodeKvmRunExit(run(KVM_EXIT_HLT)[0])).toEqual({ kind: 'other', exitReason: 5 })
  })

  test('needs the 288 bytes up to the end of the union, at the given offset', () => {
    expect(() => decodeKvmRunExit(new Uint8Array(287))).toThrow(RangeError)
    const bytes = new Uint8Array(300)
    new DataView(bytes.buffer).setUint32(12 + 8, KVM_EXIT_HLT, true)
    expect(decodeKvmRunExit(bytes, 12)).toEqual({ kind: 'other', exitReason: KVM_EXIT_HLT })
  })
})

describe('encodeKvmRunExit / writeKvmRunExit', () => {
  const u32 = fc.integer({ min: 0, max: 0xffff_ffff })
  const known = new Set([KVM_EXIT_IO, KVM_EXIT_MMIO, KVM_EXIT_INTERNAL_ERROR, KVM_EXIT_MEMORY_FAULT, KVM_EXIT_FAIL_ENTRY])
  const exitArbitrary: fc.Arbitrary<KvmRunExit> = fc.oneof(
    structArbitrary(kvm_run_io).map((io): KvmRunExit => ({ kind: 'io', exitReason: KVM_EXIT_IO, io })),
    structArbitrary(kvm_run_mmio).map((mmio): KvmRunExit => ({ kind: 'mmio', exitReason: KVM_EXIT_MMIO, mmio })),
    structArbitrary(kvm_run_internal).map((internal): KvmRunExit => ({ kind: 'internal_error', exitReason: KVM_EXIT_INTERNAL_ERROR, internal })),
    structArbitrary(kvm_run_memory_fault).map((memoryFault): KvmRunExit => ({ kind: 'memory_fault', exitReason: KVM_EXIT_MEMORY_FAULT, memoryFault })),
    structArbitrary(kvm_run_fail_entry).map((failEntry): KvmRunExit => ({ kind: 'fail_entry', exitReason: KVM_EXIT_FAIL_ENTRY, failEntry })),
    u32.filter((r) => !known.has(r)).map((exitReason): KvmRunExit => ({ kind: 'other', exitReason })),
  )

  test('property: decodeKvmRunExit(encodeKvmRunExit(x)) = x', () => {
    fc.assert(fc.property(exitArbitrary, (exit) => {
      const bytes = encodeKvmRunExit(exit)
      expect(bytes).toHaveLength(288)
      expect(decodeKvmRunExit(bytes)).toEqual(exit)
    }))
  })

  test('property: writing an exit leaves the header\'s other members alone', () => {
    fc.assert(fc.property(structArbitrary(kvm_run), exitArbitrary, (header, exit) => {
      const bytes = new Uint8Array(4096)
      bytes.set(encodeStruct(kvm_run, header))
      writeKvmRunExit(exit, bytes)
      expect(decodeStruct(kvm_run, bytes)).toEqual({ ...header, exitReason: exit.exitReason })
    }))
  })

  test('members given as numbers; absent ones are zero', () => {
    const bytes = encodeKvmRunExit({ kind: 'memory_fault', memoryFault: { flags: KVM_MEMORY_EXIT_FLAG_USERFAULT, gpa: 0x10_0000 } })
    expect(decodeKvmRunExit(bytes)).toEqual({
      kind: 'memory_fault', exitReason: 39, memoryFault: { flags: 16n, gpa: 0x10_0000n, size: 0n },
    })
  })

  test('refuses `other` with a reason that has a member, and bad member values', () => {
    expect(() => encodeKvmRunExit({ kind: 'other', exitReason: KVM_EXIT_MMIO })).toThrow(RangeError)
    expect(() => encodeKvmRunExit({ kind: 'other', exitReason: -1 })).toThrow(/kvm_run\.exitReason: -1/)
    expect(() => encodeKvmRunExit({ kind: 'memory_fault', memoryFault: { gpa: -1n } })).toThrow(/kvm_run\.memory_fault\.gpa: /)
    expect(() => encodeKvmRunExit({ kind: 'io', io: { port: 0x10000 } })).toThrow(/kvm_run\.io\.port: 65536 is out of range for a u16/)
  })
})
