// Integer conversions at the emulator's edge: the contract's number|bigint inputs become the kernel's
// fixed-width values. A value no C caller could have passed (a fraction, a u64 above 2^64 - 1, a
// negative u64) is a bug in the harness, so it is a TypeError, never an errno.

import type { U64In } from '../../harness/backend.ts'

export const U64_MAX = (1n << 64n) - 1n

/** A u64 argument: a bigint in 0..2^64-1 or a safe non-negative integer number. */
export function u64(value: U64In, what: string): bigint {
  if (typeof value === 'bigint') {
    if (value < 0n || value > U64_MAX) throw new TypeError(`${what}: ${value} is not a u64`)
    return value
  }
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new TypeError(`${what}: ${value} is not a u64 (use a bigint above 2^53)`)
  }
  return BigInt(value)
}

/**
 * A loff_t argument (fallocate, pread, pwrite): either spelling of a 64-bit value, a u64 or a signed
 * number, read as the kernel's signed 64-bit integer.
 */
export function loff(value: U64In, what: string): bigint {
  const v = typeof value === 'bigint' ? value : safeInteger(value, what)
  if (v < -(1n << 63n) || v > U64_MAX) throw new TypeError(`${what}: ${value} does not fit 64 bits`)
  return toSigned64(v)
}

/**
 * A u32 struct field (slot, flags, guest_memfd). C callers write -1 or 1 << 31 for these, so both
 * spellings are taken, -2^31..2^32-1, and wrapped to 0..2^32-1.
 */
export function u32(value: number, what: string): number {
  if (!Number.isInteger(value) || value < -(2 ** 31) || value > 2 ** 32 - 1) {
    throw new TypeError(`${what}: ${value} is not a u32`)
  }
  return value >>> 0
}

/** An int or unsigned long argument that must be a non-negative integer (a count, an index). */
export function count(value: number, what: string): number {
  if (!Number.isSafeInteger(value) || value < 0) throw new TypeError(`${what}: ${value} is not a count`)
  return value
}

/** A C `int` or `long` argument taken as any integer (KVM_CHECK_EXTENSION's cap, madvise's advice). */
export function integer(value: number, what: string): number {
  if (!Number.isSafeInteger(value)) throw new TypeError(`${what}: ${value} is not an integer`)
  return value
}

/** An `int` argument (fallocate's mode): either spelling of 32 bits, read as signed. */
export function int32(value: number, what: string): number {
  if (!Number.isInteger(value) || value < -(2 ** 31) || value > 2 ** 32 - 1) {
    throw new TypeError(`${what}: ${value} is not an int`)
  }
  return value | 0
}

/** The u64 `value` (0..2^64-1) read as a signed 64-bit integer. */
export function toSigned64(value: bigint): bigint {
  return BigInt.asIntN(64, value)
}

function safeInteger(value: number, what: string): bigint {
  if (!Number.isSafeInteger(value)) throw new TypeError(`${what}: ${value} is not a safe integer`)
  return BigInt(value)
}
