// Guest programs: a tiny backend-neutral description of what a vCPU does.
//
// The emulator interprets a program; the native backend compiles it to x86-64 long-mode code with
// identity-mapped page tables (only instructions that work on PVM hosts: shared/reference/host-kvm.md).
// Guest-to-host signals are port I/O, so every backend reports them as the same `io` exits.
//
// A program is a list of steps run in order with one 64-bit accumulator (`acc`).

import type { U64In } from './backend.ts'

export type GuestStep =
  /** Store `value` (or `acc` when omitted) at `gva`, `width` bytes (default 8). */
  | { op: 'write'; gva: U64In; value?: U64In; width?: 1 | 2 | 4 | 8 }
  /** Load `width` bytes (default 8) at `gva` into `acc`. */
  | { op: 'read'; gva: U64In; width?: 1 | 2 | 4 | 8 }
  /** Spin while the u64 at `gva` equals `value`; `acc` holds the first different value. */
  | { op: 'spin_while_eq'; gva: U64In; value: U64In }
  /** `out` to `port` of `value` (or `acc`): the host sees an `io` exit with these 8 bytes... */
  | { op: 'signal'; port: number; value?: U64In }
  /** memstress's pass: for each of `pages` pages from `gva` (step `stride`), write or read one u64. */
  | { op: 'touch_pages'; gva: U64In; pages: number; stride: number; write: boolean; value: U64In }
  /** Fill `length` bytes at `gva` with `byte` (rep stosb). */
  | { op: 'fill'; gva: U64In; length: number; byte: number }
  /** Compare `length` bytes at `gva` with `byte`; `acc` becomes the number of mismatching bytes. */
  | { op: 'check'; gva: U64In; length: number; byte: number }
  /** Load the IDT register (lidt) with `base`/`limit`. */
  | { op: 'lidt'; base: U64In; limit: number }
  /** Jump back to step `to` (a loop). */
  | { op: 'jump'; to: number }
  | { op: 'hlt' }

export interface GuestProgram {
  steps: GuestStep[]
}
