import { describe, expect, test } from 'vitest'
import { count, int32, loff, toSigned64, u32, u64 } from './u64.ts'

describe('edge conversions', () => {
  test('u64: bigint 0..2^64-1 or a safe non-negative integer; anything else is a TypeError', () => {
    expect(u64(0, 'x')).toBe(0n)
    expect(u64(2 ** 53 - 1, 'x')).toBe(2n ** 53n - 1n)
    expect(u64((1n << 64n) - 1n, 'x')).toBe((1n << 64n) - 1n)
    for (const bad of [-1, 1.5, 2 ** 53, Number.NaN, -1n, 1n << 64n]) expect(() => u64(bad, 'x')).toThrow(TypeError)
  })

  test('u32: both spellings of 32 bits, wrapped', () => {
    expect(u32(-1, 'x')).toBe(0xffffffff)
    expect(u32(1 << 31, 'x')).toBe(0x80000000)
    expect(u32(0xffffffff, 'x')).toBe(0xffffffff)
    for (const bad of [2 ** 32, -(2 ** 31) - 1, 0.5]) expect(() => u32(bad, 'x')).toThrow(TypeError)
  })

  test('loff: a u64 or a negative number, read as signed', () => {
    expect(loff(-4096, 'x')).toBe(-4096n)
    expect(loff((1n << 64n) - 1n, 'x')).toBe(-1n)
    expect(loff(1n << 62n, 'x')).toBe(1n << 62n)
    expect(() => loff(1n << 64n, 'x')).toThrow(TypeError)
  })

  test('int32, count, toSigned64', () => {
    expect(int32(0xffffffff, 'x')).toBe(-1)
    expect(count(5, 'x')).toBe(5)
    expect(() => count(-1, 'x')).toThrow(TypeError)
    expect(toSigned64(1n << 63n)).toBe(-(1n << 63n))
  })
})
