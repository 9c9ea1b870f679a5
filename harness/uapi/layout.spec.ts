// The generic machinery of layout.ts, on a toy struct whose bytes are written out by hand.

import { describe, test, expect } from 'vitest'
import fc from 'fast-check'
import { decodeStruct, defineLayout, encodeStruct, holes, writeStruct } from './layout.ts'
import { structArbitrary } from './layout-arbitrary.ts'

// struct toy { __u8 a; __u8 pad; __u16 b; __u32 c; __u64 d; __u64 e[2]; __u8 f[3]; };  (padded to 40)
const toy = defineLayout('toy', 40, {
  a: { offset: 0, type: 'u8' },
  b: { offset: 2, type: 'u16' },
  c: { offset: 4, type: 'u32' },
  d: { offset: 8, type: 'u64' },
  e: { offset: 16, type: 'u64', count: 2 },
  f: { offset: 32, type: 'u8', count: 3 },
})

const U64_MAX = (1n << 64n) - 1n

describe('layout', () => {
  test('encodes little-endian at the table offsets, zeros elsewhere', () => {
    const bytes = encodeStruct(toy, {
      a: 0x11, b: 0x2233, c: 0x44556677, d: 0x8899aabbccddeeffn, e: [1, 0x0102030405060708n], f: [7, 8, 9],
    })
    expect(Array.from(bytes)).toEqual([
      0x11, 0, 0x33, 0x22, 0x77, 0x66, 0x55, 0x44,
      0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88,
      1, 0, 0, 0, 0, 0, 0, 0,
      0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
      7, 8, 9, 0, 0, 0, 0, 0,
    ])
  })

  test('decodes u64 as bigint, narrower members as numbers, u8 arrays as Uint8Array', () => {
    const bytes = new Uint8Array(40)
    const view = new DataView(bytes.buffer)
    view.setUint8(0, 0xfe)
    view.setUint16(2, 0xbeef, true)
    view.setUint32(4, 0xdeadbeef, true)
    view.setBigUint64(8, U64_MAX, true)
    view.setBigUint64(24, 42n, true)
    bytes.set([1, 2, 3], 32)
    expect(decodeStruct(toy, bytes)).toEqual({
      a: 0xfe, b: 0xbeef, c: 0xdeadbeef, d: U64_MAX, e: [0n, 42n], f: new Uint8Array([1, 2, 3]),
    })
  })

  test('absent members and absent array tails encode as zero', () => {
    expect(decodeStruct(toy, encodeStruct(toy, { e: [5n] }))).toEqual({
      a: 0, b: 0, c: 0, d: 0n, e: [5n, 0n], f: new Uint8Array(3),
    })
  })

  test('u64 members take numbers too', () => {
    expect(decodeStruct(toy, encodeStruct(toy, { d: 4096, e: [Number.MAX_SAFE_INTEGER] })).d).toBe(4096n)
    expect(decodeStruct(toy, encodeStruct(toy, { e: [Number.MAX_SAFE_INTEGER] })).e[0]).toBe(2n ** 53n - 1n)
  })

  test('decode and write work at an offset inside a larger buffer (a kvm_run mapping, a read() batch)', () => {
    const big = new Uint8Array(100).fill(0xaa)
    writeStruct(toy, { c: 1 }, big, 48)
    expect(big[51]).toBe(0xaa)
    expect(Array.from(big.subarray(52, 56))).toEqual([1, 0, 0, 0])
    expect(big[56]).toBe(0xaa)
    expect(decodeStruct(toy, big, 48).c).toBe(1)
    expect(decodeStruct(toy, big.subarray(48)).c).toBe(1)
  })

  test('decoded arrays are copies', () => {
    const bytes = encodeStruct(toy, { f: [1, 2, 3] })
    const value = decodeStruct(toy, bytes)
    value.f[0] = 99
    expect(bytes[32]).toBe(1)
  })

  test('holes() lists the bytes no member covers', () => {
    expect(holes(toy)).toEqual([[1, 2], [35, 40]])
  })

  test('property: decode(encode(x)) = x over the full range of every member', () => {
    fc.assert(fc.property(structArbitrary(toy), (x) => {
      expect(decodeStruct(toy, encodeStruct(toy, x))).toEqual(x)
    }))
  })

  test('property: writeStruct changes only the bytes of the members it is given', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 40, maxLength: 40 }), fc.integer({ min: 0, max: 0xffff_ffff }),
      (before, c) => {
        const after = before.slice()
        writeStruct(toy, { c }, after)
        expect(after.subarray(0, 4)).toEqual(before.subarray(0, 4))
        expect(after.subarray(8)).toEqual(before.subarray(8))
        expect(decodeStruct(toy, after).c).toBe(c)
      }))
  })

  describe('encoding rejects what the C type cannot hold, naming struct.member', () => {
    test.each([
      ['negative u64 bigint', { d: -1n }, /^toy\.d: -1 is out of range for a u64/],
      ['u64 bigint of 2^64', { d: 1n << 64n }, /^toy\.d: 18446744073709551616 is out of range/],
      ['negative u64 number', { d: -1 }, /^toy\.d: -1 is out of range/],
      ['non-integer u64 number', { d: 0.5 }, /^toy\.d: 0.5 is not an integer/],
      ['u64 number past 2^53-1', { d: 2 ** 53 }, /^toy\.d: 9007199254740992 is above 2\^53-1; pass a bigint/],
      ['u64 number of 2^64', { d: 2 ** 64 }, /^toy\.d: /],
      ['NaN', { d: Number.NaN }, /^toy\.d: NaN is not an integer/],
      ['u32 of 2^32', { c: 2 ** 32 }, /^toy\.c: 4294967296 is out of range for a u32 \(0\.\.4294967295\)/],
      ['negative u32', { c: -1 }, /^toy\.c: -1 is out of range for a u32/],
      ['non-integer u32', { c: 1.5 }, /^toy\.c: 1.5 is not an integer/],
      ['u16 of 2^16', { b: 0x10000 }, /^toy\.b: 65536 is out of range for a u16/],
      ['u8 of 256', { a: 256 }, /^toy\.a: 256 is out of range for a u8/],
      ['array element', { e: [0n, -5n] }, /^toy\.e\[1\]: -5 is out of range/],
      ['u8 array element', { f: [0, 0, 300] }, /^toy\.f\[2\]: 300 is out of range for a u8/],
      ['array too long', { e: [0n, 0n, 0n] }, /^toy\.e: 3 elements do not fit in 2/],
    ])('%s', (_, value, message) => {
      expect(() => encodeStruct(toy, value as never)).toThrow(RangeError)
      expect(() => encodeStruct(toy, value as never)).toThrow(message)
    })

    test('property: any u64 outside 0..2^64-1 is a RangeError', () => {
      const outside = fc.oneof(fc.bigInt({ max: -1n }), fc.bigInt({ min: 1n << 64n }))
      fc.assert(fc.property(outside, (d) => {
        expect(() => encodeStruct(toy, { d })).toThrow(/^toy\.d: /)
      }))
    })

    test('property: any u32 outside 0..2^32-1, or not an integer, is a RangeError', () => {
      const bad = fc.oneof(
        fc.integer({ max: -1 }),
        fc.double({ min: 2 ** 32, noNaN: true }),
        fc.double({ noNaN: true }).filter((v) => !Number.isInteger(v)),
      )
      fc.assert(fc.property(bad, (c) => {
        expect(() => encodeStruct(toy, { c })).toThrow(RangeError)
        expect(() => encodeStruct(toy, { c })).toThrow(/^toy\.c: /)
      }))
    })

    test('wrong types and unknown members are TypeErrors', () => {
      expect(() => encodeStruct(toy, { c: 1n } as never)).toThrow(new TypeError('toy.c: expected a number, got bigint'))
      expect(() => encodeStruct(toy, { d: '1' } as never)).toThrow(TypeError)
      expect(() => encodeStruct(toy, { e: 1n } as never)).toThrow(new TypeError('toy.e: expected an array'))
      expect(() => encodeStruct(toy, { dd: 1 } as never)).toThrow(new TypeError('toy has no member dd'))
    })

    test('nothing is written when any member is bad', () => {
      const bytes = new Uint8Array(40)
      expect(() => writeStruct(toy, { a: 1, c: -1 }, bytes)).toThrow(RangeError)
      expect(bytes).toEqual(new Uint8Array(40))
    })
  })

  test('decoding and writing need the whole struct inside the buffer', () => {
    expect(() => decodeStruct(toy, new Uint8Array(39))).toThrow(new RangeError('toy: needs 40 bytes at offset 0, the buffer has 39'))
    expect(() => decodeStruct(toy, new Uint8Array(40), 1)).toThrow(RangeError)
    expect(() => writeStruct(toy, {}, new Uint8Array(41), 2)).toThrow(RangeError)
  })

  test('defineLayout refuses tables that cannot be a C struct', () => {
    expect(() => defineLayout('t', 8, { a: { offset: 4, type: 'u64' } })).toThrow(/t\.a: bytes 4\.\.12 do not fit in 8/)
    expect(() => defineLayout('t', 16, { a: { offset: 4, type: 'u64' } })).toThrow(/t\.a: offset 4 is not 8-aligned/)
    expect(() => defineLayout('t', 16, { a: { offset: 0, type: 'u64' }, b: { offset: 4, type: 'u32' } }))
      .toThrow(/t\.b overlaps t\.a/)
    expect(() => defineLayout('t', 16, { a: { offset: 0, type: 'u64', count: 0 } })).toThrow(/t\.a/)
  })
})
