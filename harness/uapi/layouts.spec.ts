// Pins every KVM ioctl-argument struct's size and member offsets with literal numbers (one test per
// struct, as in include/uapi/linux/kvm.h and shared/reference/upstream-selftests.md §0.4), and checks
// each encoder/decoder pair by round trip. kvm_run is in kvm-run.spec.ts, uffd_msg in userfaultfd.spec.ts.

import { describe, test, expect } from 'vitest'
import fc from 'fast-check'
import type { UserspaceMemoryRegion, UserspaceMemoryRegion2 } from '../backend.ts'
import {
  decodeCreateGuestMemfd, decodeDirtyLog, decodeEnableCap, decodeMemoryAttributes, decodePreFaultMemory,
  decodeStruct, decodeUserspaceMemoryRegion, decodeUserspaceMemoryRegion2, encodeCreateGuestMemfd,
  encodeDirtyLog, encodeEnableCap, encodeMemoryAttributes, encodePreFaultMemory, encodeStruct,
  encodeUserspaceMemoryRegion, encodeUserspaceMemoryRegion2, holes, kvm_create_guest_memfd, kvm_dirty_log,
  kvm_enable_cap, kvm_memory_attributes, kvm_pre_fault_memory, kvm_userspace_memory_region,
  kvm_userspace_memory_region2, type StructLayout,
} from './layouts.ts'
import { structArbitrary } from './layout-arbitrary.ts'

/** name -> [offset, type, count?], for a compact literal pin of a whole table. */
function table(layout: StructLayout): Record<string, (number | string)[]> {
  return Object.fromEntries(Object.entries(layout.fields).map(([k, f]) =>
    [k, f.count === undefined ? [f.offset, f.type] : [f.offset, f.type, f.count]]))
}

describe('struct layouts (include/uapi/linux/kvm.h)', () => {
  test('kvm_userspace_memory_region: 32 bytes', () => {
    expect(kvm_userspace_memory_region.size).toBe(32)
    expect(table(kvm_userspace_memory_region)).toEqual({
      slot: [0, 'u32'], flags: [4, 'u32'], guestPhysAddr: [8, 'u64'], memorySize: [16, 'u64'],
      userspaceAddr: [24, 'u64'],
    })
  })

  test('kvm_userspace_memory_region2: 160 bytes, userfault_bitmap at 48, pad2[13] at 56..159', () => {
    expect(kvm_userspace_memory_region2.size).toBe(160)
    expect(table(kvm_userspace_memory_region2)).toEqual({
      slot: [0, 'u32'], flags: [4, 'u32'], guestPhysAddr: [8, 'u64'], memorySize: [16, 'u64'],
      userspaceAddr: [24, 'u64'], guestMemfdOffset: [32, 'u64'], guestMemfd: [40, 'u32'], pad1: [44, 'u32'],
      userfaultBitmap: [48, 'u64'], pad2: [56, 'u64', 13],
    })
    expect(56 + 13 * 8).toBe(160)
  })

  test('kvm_create_guest_memfd: 64 bytes', () => {
    expect(kvm_create_guest_memfd.size).toBe(64)
    expect(table(kvm_create_guest_memfd)).toEqual({ size: [0, 'u64'], flags: [8, 'u64'], reserved: [16, 'u64', 6] })
  })

  test('kvm_pre_fault_memory: 64 bytes', () => {
    expect(kvm_pre_fault_memory.size).toBe(64)
    expect(table(kvm_pre_fault_memory)).toEqual({
      gpa: [0, 'u64'], size: [8, 'u64'], flags: [16, 'u64'], padding: [24, 'u64', 5],
    })
  })

  test('kvm_memory_attributes: 32 bytes', () => {
    expect(kvm_memory_attributes.size).toBe(32)
    expect(table(kvm_memory_attributes)).toEqual({
      address: [0, 'u64'], size: [8, 'u64'], attributes: [16, 'u64'], flags: [24, 'u64'],
    })
  })

  test('kvm_enable_cap: 104 bytes', () => {
    expect(kvm_enable_cap.size).toBe(104)
    expect(table(kvm_enable_cap)).toEqual({ cap: [0, 'u32'], flags: [4, 'u32'], args: [8, 'u64', 4], pad: [40, 'u8', 64] })
  })

  test('kvm_dirty_log: 16 bytes', () => {
    expect(kvm_dirty_log.size).toBe(16)
    expect(table(kvm_dirty_log)).toEqual({ slot: [0, 'u32'], padding1: [4, 'u32'], dirtyBitmap: [8, 'u64'] })
  })

  test('none of them has implicit padding: every byte belongs to a member', () => {
    for (const layout of [kvm_userspace_memory_region, kvm_userspace_memory_region2, kvm_create_guest_memfd,
      kvm_pre_fault_memory, kvm_memory_attributes, kvm_enable_cap, kvm_dirty_log]) {
      expect(holes(layout), layout.name).toEqual([])
    }
  })
})

describe('encoders and decoders', () => {
  // [layout, encode, decode]: every pair this directory exports for these structs.
  const pairs = [
    [kvm_userspace_memory_region, encodeUserspaceMemoryRegion, decodeUserspaceMemoryRegion],
    [kvm_userspace_memory_region2, encodeUserspaceMemoryRegion2, decodeUserspaceMemoryRegion2],
    [kvm_create_guest_memfd, encodeCreateGuestMemfd, decodeCreateGuestMemfd],
    [kvm_pre_fault_memory, encodePreFaultMemory, decodePreFaultMemory],
    [kvm_memory_attributes, encodeMemoryAttributes, decodeMemoryAttributes],
    [kvm_enable_cap, encodeEnableCap, decodeEnableCap],
    [kvm_dirty_log, encodeDirtyLog, decodeDirtyLog],
  ] as const

  test.each(pairs.map((p) => [p[0].name, ...p] as const))(
    'property: %s decode(encode(x)) = x, and encode(decode(bytes)) = bytes',
    (_, layout, encode, decode) => {
      const enc = encode as (v: unknown) => Uint8Array
      fc.assert(fc.property(structArbitrary(layout as StructLayout), (x) => {
        const bytes = enc(x)
        expect(bytes).toHaveLength(layout.size)
        expect(decode(bytes)).toEqual(x)
      }))
      fc.assert(fc.property(fc.uint8Array({ minLength: layout.size, maxLength: layout.size }), (bytes) => {
        expect(enc(decode(bytes))).toEqual(bytes)
      }))
    },
  )

  test('property: each encoder rejects an out-of-range u64 with a RangeError naming struct.member', () => {
    const outside = fc.oneof(fc.bigInt({ max: -1n }), fc.bigInt({ min: 1n << 64n }), fc.constant(-1), fc.constant(0.5))
    const u64Members = pairs.flatMap(([layout]) => Object.entries(layout.fields as StructLayout['fields'])
      .filter(([, f]) => f.type === 'u64' && f.count === undefined)
      .map(([key]) => [layout as StructLayout, key] as const))
    expect(u64Members.length).toBeGreaterThan(15)
    fc.assert(fc.property(fc.constantFrom(...u64Members), outside, ([layout, key], v) => {
      expect(() => encodeStruct(layout, { [key]: v })).toThrow(RangeError)
      expect(() => encodeStruct(layout, { [key]: v })).toThrow(`${layout.name}.${key}: `)
    }))
  })

  test('the backend contract\'s region types encode as they are', () => {
    const region: UserspaceMemoryRegion = { slot: 1, flags: 0, guestPhysAddr: 0x1000_0000, memorySize: 4096n, userspaceAddr: 0x7f00_0000_0000 }
    expect(decodeUserspaceMemoryRegion(encodeUserspaceMemoryRegion(region))).toEqual({
      slot: 1, flags: 0, guestPhysAddr: 0x1000_0000n, memorySize: 4096n, userspaceAddr: 0x7f00_0000_0000n,
    })
    const region2: UserspaceMemoryRegion2 = { ...region, flags: 8, userfaultBitmap: 0x7f00_1000_0000n, pad2: [1n] }
    const bytes = encodeUserspaceMemoryRegion2(region2)
    expect(new DataView(bytes.buffer).getBigUint64(48, true)).toBe(0x7f00_1000_0000n)
    expect(new DataView(bytes.buffer).getBigUint64(56, true)).toBe(1n)
    expect(decodeUserspaceMemoryRegion2(bytes)).toMatchObject({ flags: 8, guestMemfd: 0, pad2: [1n, ...Array(12).fill(0n)] })
  })

  test('a region2 written by hand at the header\'s offsets decodes member by member', () => {
    const bytes = new Uint8Array(160)
    const view = new DataView(bytes.buffer)
    view.setUint32(0, 0x1_0002, true)
    view.setUint32(4, 4 | 8, true)
    view.setBigUint64(8, 0xc000_0000n, true)
    view.setBigUint64(16, 0x20_0000n, true)
    view.setBigUint64(24, 0x7fff_0000_0000n, true)
    view.setBigUint64(32, 0x1000n, true)
    view.setUint32(40, 7, true)
    view.setUint32(44, 0, true)
    view.setBigUint64(48, 0xdead_b000n, true)
    view.setBigUint64(152, 0xffff_ffff_ffff_ffffn, true)
    expect(decodeUserspaceMemoryRegion2(bytes)).toEqual({
      slot: 0x1_0002, flags: 12, guestPhysAddr: 0xc000_0000n, memorySize: 0x20_0000n, userspaceAddr: 0x7fff_0000_0000n,
      guestMemfdOffset: 0x1000n, guestMemfd: 7, pad1: 0, userfaultBitmap: 0xdead_b000n,
      pad2: [...Array(12).fill(0n), 0xffff_ffff_ffff_ffffn],
    })
  })

  test('kvm_enable_cap and kvm_dirty_log by hand', () => {
    const cap = encodeEnableCap({ cap: 236, args: [1n, 5] })
    const view = new DataView(cap.buffer)
    expect([view.getUint32(0, true), view.getBigUint64(8, true), view.getBigUint64(16, true)]).toEqual([236, 1n, 5n])
    expect(cap.subarray(24)).toEqual(new Uint8Array(80))
    const log = encodeDirtyLog({ slot: 3, dirtyBitmap: 0x5555_0000n })
    expect(Array.from(log)).toEqual([3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x55, 0x55, 0, 0, 0, 0])
  })

  test('the decoders read from an offset and refuse a short buffer', () => {
    const buf = new Uint8Array(8 + 64)
    buf.set(encodePreFaultMemory({ gpa: 0x1000, size: 0x2000 }), 8)
    expect(decodePreFaultMemory(buf, 8)).toMatchObject({ gpa: 0x1000n, size: 0x2000n, flags: 0n })
    expect(() => decodeStruct(kvm_pre_fault_memory, buf, 9)).toThrow(RangeError)
    expect(() => decodeMemoryAttributes(new Uint8Array(31))).toThrow(/kvm_memory_attributes: needs 32 bytes/)
  })
})
