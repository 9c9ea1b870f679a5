// Guest programs: a tiny backend-neutral description of what a vCPU does.
//
// The emulator interprets a program; the native backend compiles it to x86-64 long-mode code with
// identity-mapped page tables (only instructions that work on PVM hosts: shared/reference/host-kvm.md;
// the compiler is backends/native/guest-code/). Guest-to-host signals are port I/O, so every backend
// reports them as the same `io` exits.
//
// A program is a list of steps run in order with one 64-bit accumulator (`acc`), which is 0 when the
// program starts. Semantics every backend keeps:
// - Addresses are guest virtual addresses. GVA = GPA for [0, 64 GiB) (2 MiB pages; 64 GiB = 2^36, the
//   MAXPHYADDR KVM assumes without KVM_SET_CPUID2); every byte a step accesses must lie in that range,
//   unless the step says `expectFault`. Memslot 0 at GPA 0 (2 MiB) is the boot slot holding the code,
//   page tables and descriptor tables; programs may read and write it, tests place their slots above it.
// - A step that exits to the host (`signal`, `hlt`, an MMIO access) resumes where it stopped when the
//   host re-enters KVM_RUN: after `signal` or `hlt` the next step runs.
// - After the last step the vCPU halts (`hlt` exit) and halts again each time it is re-entered.
// - The initial IDT is an all-zero table, so any exception ends in a triple fault (`shutdown` exit)
//   until a `lidt` step loads another.
// - An invalid program (a value that does not fit its field, an access outside the identity map, a jump
//   to a missing step) is refused when it is loaded: loadProgram() rejects with a RangeError whose
//   message starts `step <index> (<op>)`.

import type { U64In } from './backend.ts'

export type GuestStep =
  /**
   * Store `value`, or the low `width` bytes of `acc` when `value` is omitted, at `gva`: `width` bytes
   * (1, 2, 4 or 8; default 8), little-endian. An explicit `value` must fit in `width` bytes.
   * `expectFault`: the access is meant to raise an exception (#GP for a non-canonical `gva`, #PF past the
   * identity map), so `gva` may lie anywhere (set_memory_region_test's test_mmio_during_vectoring).
   */
  | { op: 'write'; gva: U64In; value?: U64In; width?: 1 | 2 | 4 | 8; expectFault?: boolean }
  /** Load `width` bytes (1, 2, 4 or 8; default 8) at `gva` into `acc`, zero-extended. `expectFault` as for `write`. */
  | { op: 'read'; gva: U64In; width?: 1 | 2 | 4 | 8; expectFault?: boolean }
  /**
   * Spin while the u64 at `gva` equals `value`: loop { acc = u64 at gva; if acc != value, stop }. When the
   * step ends, `acc` holds the first different value (kvm_util's guest_spin_on_val()).
   */
  | { op: 'spin_while_eq'; gva: U64In; value: U64In }
  /**
   * `out` to `port` (0..0xffff) of a 32-bit value: `value`, which must fit in 32 bits, or the low 32 bits
   * of `acc` when `value` is omitted. The host sees an `io` exit: direction 'out', size 4, count 1, `data`
   * the 4 little-endian bytes. Signals carry 32 bits, never 64. Re-entering runs the next step.
   */
  | { op: 'signal'; port: number; value?: U64In }
  /**
   * memstress's pass: for i in 0..pages-1, if `write` store the u64 `value` at gva + i * stride, else load
   * the u64 there into `acc` (so a read pass leaves the last page's value in `acc`). `pages` and `stride`
   * are non-negative integers; `pages` 0 does nothing. Every u64 touched must lie in the identity map.
   */
  | { op: 'touch_pages'; gva: U64In; pages: number; stride: number; write: boolean; value: U64In }
  /** Fill `length` (>= 0) bytes at `gva` with `byte` (0..255), as rep stosb does. `acc` is unchanged. */
  | { op: 'fill'; gva: U64In; length: number; byte: number }
  /** Compare `length` (>= 0) bytes at `gva` with `byte` (0..255); `acc` becomes the number of mismatching bytes. */
  | { op: 'check'; gva: U64In; length: number; byte: number }
  /**
   * Load the IDT register (lidt) with `base`/`limit` (0..0xffff). The table itself is not touched; its
   * bytes [base, base + limit] must lie in the identity map. `acc` is unchanged.
   */
  | { op: 'lidt'; base: U64In; limit: number }
  /** Continue at the start of step `to` (an index into `steps`; a loop when it points backwards). */
  | { op: 'jump'; to: number }
  /** Halt: the host sees a `hlt` exit; re-entering runs the next step. */
  | { op: 'hlt' }

/**
 * The boot memslot: where every backend keeps a program's code, stack and page tables. The first
 * loadProgram of a VM creates memslot 0 at GPA 0 over BOOT_SLOT_SIZE bytes of anonymous host memory, as
 * upstream kvm_util keeps code and page tables in slot 0; tests that run vCPUs leave slot 0 and the first
 * 2 MiB of guest physical memory alone (test_delete_memory_region deletes it on purpose, to kill the guest).
 */
export const BOOT_SLOT = 0
export const BOOT_SLOT_GPA = 0n
export const BOOT_SLOT_SIZE = 0x20_0000
/** Guest virtual = guest physical for [0, IDENTITY_MAP_END): every gva a program names lies below it. */
export const IDENTITY_MAP_END = 64n << 30n

export interface GuestProgram {
  steps: GuestStep[]
}
