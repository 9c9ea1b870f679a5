// Load-time validation of a guest program (harness/guest-program.ts), for the emulator's interpreter.
//
// The rules are the ones the step language states, so a program the emulator refuses is one every backend
// refuses: a field that does not fit, an access outside the identity map (unless the step says
// `expectFault`), a jump to a missing step. Each refusal is a message `step <index> (<op>): <what>`, which
// contract/vcpu.ts throws as the RangeError harness/guest-program.ts promises. The result is the program with
// every field normalised (bigints for u64s), so the interpreter never re-checks.

import type { GuestProgram } from '../../harness/guest-program.ts'
import { StepChecker, type Width } from '../../harness/guest-program-check.ts'

export type { Width }

/** A checked step: the fields the interpreter reads, normalised. */
export type Step =
  | { op: 'write'; gva: bigint; width: Width; value: bigint | null }
  | { op: 'read'; gva: bigint; width: Width }
  | { op: 'spin_while_eq'; gva: bigint; value: bigint }
  | { op: 'signal'; port: number; value: number | null }
  | { op: 'touch_pages'; gva: bigint; pages: number; stride: bigint; write: boolean; value: bigint }
  | { op: 'fill'; gva: bigint; length: number; byte: number }
  | { op: 'check'; gva: bigint; length: number; byte: number }
  | { op: 'lidt'; base: bigint; limit: number }
  | { op: 'jump'; to: number }
  | { op: 'hlt' }

export interface CheckedProgram {
  readonly steps: readonly Step[]
}

/**
 * The emulator's synthetic code layout, shaped after the native boot image (backends/native/guest-code/
 * boot-image.ts): vCPU `id` has a 16 KiB area at 0x80000 + id * 0x4000 of the boot slot, code first
 * (12 KiB). Step i "is" at code + i * 16 and the trailing halt loop at code + steps * 16, so getRip()
 * names the step and an instruction fetch has a guest page to come from.
 */
export const VCPU_AREAS_GPA = 0x8_0000n
export const VCPU_AREA_SIZE = 0x4000n
export const CODE_SIZE = 0x3000n
export const STEP_BYTES = 16n
/** The highest vCPU id whose area fits in the 2 MiB boot slot (95, as on the native backend). */
export const MAX_PROGRAM_VCPU_ID = Number((0x20_0000n - VCPU_AREAS_GPA) / VCPU_AREA_SIZE) - 1

/** Where vCPU `id`'s code starts (its first step). */
export function codeBase(id: number): bigint {
  return VCPU_AREAS_GPA + BigInt(id) * VCPU_AREA_SIZE
}

function checkStep(raw: unknown, index: number, count: number): Step {
  const isObject = typeof raw === 'object' && raw !== null
  const op = isObject ? String((raw as { op?: unknown }).op) : typeof raw
  const f = new StepChecker(index, op)
  if (!isObject) f.fail('a step must be an object')
  const s = raw as Record<string, unknown>
  switch (s.op) {
    case 'write': {
      const width = f.width(s.width)
      const gva = f.u64('gva', s.gva)
      if (!f.faultExpected(s.expectFault)) f.mapped('gva', gva, BigInt(width))
      const value = s.value === undefined ? null : f.u64('value', s.value, (1n << BigInt(8 * width)) - 1n)
      return { op: 'write', gva, width, value }
    }
    case 'read': {
      const width = f.width(s.width)
      const gva = f.u64('gva', s.gva)
      if (!f.faultExpected(s.expectFault)) f.mapped('gva', gva, BigInt(width))
      return { op: 'read', gva, width }
    }
    case 'spin_while_eq': {
      const gva = f.u64('gva', s.gva)
      const value = f.u64('value', s.value)
      f.mapped('gva', gva, 8n)
      return { op: 'spin_while_eq', gva, value }
    }
    case 'signal': {
      const port = f.int('port', s.port, 0xffff)
      const value = s.value === undefined ? null : Number(f.u64('value', s.value, 0xffff_ffffn))
      return { op: 'signal', port, value }
    }
    case 'touch_pages': {
      const gva = f.u64('gva', s.gva)
      const pages = f.int('pages', s.pages, Number.MAX_SAFE_INTEGER)
      const stride = BigInt(f.int('stride', s.stride, Number.MAX_SAFE_INTEGER))
      const write = f.bool('write', s.write)
      const value = f.u64('value', s.value)
      if (pages > 0) f.mapped('the last page touched', gva + BigInt(pages - 1) * stride, 8n)
      return { op: 'touch_pages', gva, pages, stride, write, value }
    }
    case 'fill':
    case 'check': {
      const gva = f.u64('gva', s.gva)
      const length = f.int('length', s.length, Number.MAX_SAFE_INTEGER)
      const byte = f.int('byte', s.byte, 0xff)
      f.mapped('range', gva, BigInt(length))
      return { op: s.op, gva, length, byte }
    }
    case 'lidt': {
      const base = f.u64('base', s.base)
      const limit = f.int('limit', s.limit, 0xffff)
      f.mapped('table', base, BigInt(limit) + 1n)
      return { op: 'lidt', base, limit }
    }
    case 'jump': {
      const to = f.int('to', s.to, Number.MAX_SAFE_INTEGER)
      if (to >= count) f.fail(`to ${to}: there is no step ${to} (the program has ${count})`)
      return { op: 'jump', to }
    }
    case 'hlt':
      return { op: 'hlt' }
    default:
      return f.fail('unknown op')
  }
}

/** The program checked for vCPU `vcpuId`, or the message of the RangeError loadProgram() rejects with. */
export function checkGuestProgram(program: GuestProgram, vcpuId: number): CheckedProgram | { refused: string } {
  if (vcpuId > MAX_PROGRAM_VCPU_ID) {
    return { refused: `vCPU id ${vcpuId}: the boot slot has areas for ids 0..${MAX_PROGRAM_VCPU_ID}` }
  }
  const raw: unknown = (program as { steps?: unknown } | null)?.steps
  if (!Array.isArray(raw)) return { refused: 'guest program: steps must be an array' }
  // One STEP_BYTES slot per step plus the trailing halt loop must fit the code area (767 steps).
  if (BigInt(raw.length + 1) * STEP_BYTES > CODE_SIZE) {
    return { refused: `guest program: ${raw.length} steps do not fit in the vCPU's ${CODE_SIZE} bytes of code` }
  }
  try {
    return { steps: raw.map((s, i) => checkStep(s, i, raw.length)) }
  } catch (e) {
    if (e instanceof RangeError) return { refused: e.message }
    throw e
  }
}
