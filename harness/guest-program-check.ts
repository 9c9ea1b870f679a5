// Validation of one guest-program step's fields, shared by every backend so that a program one backend
// refuses is refused by all: each check throws the RangeError harness/guest-program.ts promises for an
// invalid program, `step <index> (<op>): <what>`, and returns the field normalised (a bigint for a u64,
// a number for a small integer).

import { IDENTITY_MAP_END } from './guest-program.ts'
import { hex } from './hex.ts'

/** An access width in bytes. */
export type Width = 1 | 2 | 4 | 8

const U64_MAX = (1n << 64n) - 1n

/** Checks one step's fields and returns them as bigints and numbers, or throws naming the step. */
export class StepChecker {
  constructor(readonly index: number, readonly op: string) {}

  /** Throws the RangeError every invalid program gets: `step <index> (<op>): <what>`. */
  fail(what: string): never {
    throw new RangeError(`step ${this.index} (${this.op}): ${what}`)
  }

  u64(name: string, v: unknown, max = U64_MAX): bigint {
    let value: bigint
    if (typeof v === 'bigint') value = v
    else if (typeof v === 'number' && Number.isSafeInteger(v)) value = BigInt(v)
    else if (typeof v === 'number' && Number.isInteger(v)) this.fail(`${name} ${v} is above 2^53-1; pass a bigint`)
    else this.fail(`${name} must be an integer, got ${String(v)}`)
    if (value < 0n || value > max) this.fail(`${name} ${value} is out of range 0..${hex(max)}`)
    return value
  }

  int(name: string, v: unknown, max: number): number {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > max) {
      this.fail(`${name} must be an integer in 0..${max}, got ${String(v)}`)
    }
    return v
  }

  width(v: unknown): Width {
    if (v === undefined) return 8
    if (v === 1 || v === 2 || v === 4 || v === 8) return v
    return this.fail(`width must be 1, 2, 4 or 8, got ${String(v)}`)
  }

  bool(name: string, v: unknown): boolean {
    if (typeof v !== 'boolean') this.fail(`${name} must be a boolean, got ${String(v)}`)
    return v
  }

  /** [start, start + length) must lie in the identity map. */
  mapped(name: string, start: bigint, length: bigint): void {
    if (start + length > IDENTITY_MAP_END) {
      this.fail(`${name} ${hex(start)}..${hex(start + length)} is outside the identity map [0, ${hex(IDENTITY_MAP_END)})`)
    }
  }

  /** `expectFault` lifts the identity-map rule for a read or write. */
  faultExpected(v: unknown): boolean {
    return v !== undefined && this.bool('expectFault', v)
  }
}
