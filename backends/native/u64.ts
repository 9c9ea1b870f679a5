// Integer conversions at the native backend's edge: the contract's number|bigint inputs become the
// fixed-width values addon.cc takes (bigint for u64, integer numbers for u32/int). A value no C caller
// could have passed (a fraction, a negative u64, one above 2^64 - 1) is a TypeError before any call,
// as in the emulator, so that both backends answer a harness bug the same way.

import type { U64In } from '../../harness/backend.ts'

export const U64_MAX = (1n << 64n) - 1n

/** A u64: a bigint in 0..2^64-1 or a safe non-negative integer number. */
export function u64(value: U64In, what: string): bigint {
  if (typeof value === 'bigint') {
    if (value < 0n || value > U64_MAX) throw new TypeError(`${what}: ${value} is not a u64`)
    return value
  }
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new TypeError(`${what}: ${String(value)} is not a u64 (use a bigint above 2^53)`)
  }
  return BigInt(value)
}

/** A loff_t (pread, pwrite, fallocate): a signed or unsigned 64-bit value, passed as its u64 bits. */
export function loff(value: U64In, what: string): bigint {
  const v = typeof value === 'bigint' ? value : safeInteger(value, what)
  if (v < -(1n << 63n) || v > U64_MAX) throw new TypeError(`${what}: ${value} does not fit 64 bits`)
  return BigInt.asUintN(64, v)
}

/** A u32 struct field: -2^31..2^32-1 (C callers write -1 or 1 << 31), wrapped to 0..2^32-1. */
export function u32(value: number, what: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < -(2 ** 31) || value > 2 ** 32 - 1) {
    throw new TypeError(`${what}: ${String(value)} is not a u32`)
  }
  return value >>> 0
}

/** An int argument (fallocate's mode, open flags): -2^31..2^32-1, wrapped to a signed 32-bit value. */
export function int(value: number, what: string): number {
  return u32(value, what) | 0
}

/** A non-negative safe integer (a count, a length, an index). */
export function count(value: number, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new TypeError(`${what}: ${String(value)} is not a count`)
  }
  return value
}

/** `n` u64 values as a BigUint64Array (missing entries are 0). */
export function u64Array(values: readonly U64In[] | undefined, n: number, what: string): BigUint64Array {
  const out = new BigUint64Array(n)
  if (values === undefined) return out
  if (!Array.isArray(values) || values.length > n) throw new TypeError(`${what}: at most ${n} u64 values`)
  values.forEach((v, i) => { out[i] = u64(v, `${what}[${i}]`) })
  return out
}

function safeInteger(value: number, what: string): bigint {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) throw new TypeError(`${what}: ${String(value)} is not a safe integer`)
  return BigInt(value)
}
