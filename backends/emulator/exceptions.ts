// x86 exceptions for the interpreter: which accesses raise one, how delivery through the IDT ends, and the
// KVM_EXIT_INTERNAL_ERROR payloads KVM reports when it cannot go on.
//
// Guest programs have no handler code, so delivering an exception can only fail; how it fails is what a
// test observes (set_memory_region_test's test_mmio_during_vectoring and test_delete_memory_region).
// The internal-error payloads are shaped as a VMX host with EPT reports them (vmx_get_exit_info()):
// the emulator stands for hardware-virtualised upstream KVM, not for PVM.

import type { VcpuExit } from '../../harness/backend.ts'
import { IDENTITY_MAP_END } from '../../harness/guest-program.ts'
import { KVM_INTERNAL_ERROR_DELIVERY_EV, KVM_INTERNAL_ERROR_EMULATION } from '../../harness/uapi/kvm.ts'

export const DF_VECTOR = 8
export const NP_VECTOR = 11
export const GP_VECTOR = 13
export const PF_VECTOR = 14

/** Vectors that push an error code (SDM vol. 3A, 6.13 and table 6-1): #DF, #TS, #NP, #SS, #GP, #PF, #AC. */
const ERROR_CODE_VECTORS = new Set([8, 10, 11, 12, 13, 14, 17])

/** SDM vol. 1, 3.3.7.1: with 48-bit linear addresses, bits 63..47 of a canonical address are all equal. */
export function isCanonical(address: bigint): boolean {
  const top = address >> 47n
  return top === 0n || top === 0x1ffffn
}

/**
 * The exception a data access of `length` bytes at `gva` raises, if any: #GP when a byte's address is
 * not canonical (checked before paging, SDM vol. 3A 6.15 interrupt 13), #PF when a byte lies past the
 * identity map (the page tables map nothing else, harness/guest-program.ts).
 */
export function accessException(gva: bigint, length: number): number | undefined {
  const last = (gva + BigInt(length) - 1n) & ((1n << 64n) - 1n)
  if (!isCanonical(gva) || !isCanonical(last)) return GP_VECTOR
  if (gva >= IDENTITY_MAP_END || last >= IDENTITY_MAP_END) return PF_VECTOR
  return undefined
}

/** The IDT register (lidt): the gates are at linear base + vector * 16, the last valid byte at base + limit. */
export interface Idtr {
  base: bigint
  limit: number
}

/**
 * What reading a 16-byte gate gives: its bytes, the GPA of the first byte with no memslot behind it, or
 * how the read itself stops KVM_RUN (`S`: a memory fault exit, a bare EFAULT, a retry; the caller's).
 */
export type GateRead<S> = Uint8Array | { mmio: bigint } | { stop: S }

/**
 * Delivers exception `vector` through `idtr` (SDM vol. 3A 6.14.1: 16-byte gates in 64-bit mode):
 * - a gate past the limit raises #GP, a gate whose P bit (byte 5, bit 7) is clear raises #NP; either,
 *   while delivering #GP, #NP or #PF, becomes #DF (SDM vol. 3A 6.15, interrupt 8, table 6-5), and a
 *   failure while delivering #DF is a triple fault: KVM_EXIT_SHUTDOWN.
 * - a gate whose GPA has no memslot: the hardware's IDT read exits to KVM as an EPT violation with the
 *   event still vectoring, and KVM cannot emulate MMIO mid-delivery: kvm_mmu_page_fault() ->
 *   kvm_prepare_event_vectoring_exit(), KVM_INTERNAL_ERROR_DELIVERY_EV.
 * - a present gate would start a handler, which no guest program has: an emulation failure, the
 *   emulator's refusal to invent one.
 * `readGate` is given the GPA of a gate (GVA = GPA: lidt keeps the table in the identity map); a read that
 * stops KVM_RUN is handed back as it came.
 */
export function deliverException<S>(
  vector: number,
  idtr: Idtr,
  readGate: (gpa: bigint) => GateRead<S>,
): VcpuExit | { stop: S } {
  let v = vector
  for (;;) {
    const offset = v * 16
    if (offset + 15 <= idtr.limit) {
      const gpa = idtr.base + BigInt(offset)
      const gate = readGate(gpa)
      if (!(gate instanceof Uint8Array)) return 'mmio' in gate ? deliveryEventExit(v, gate.mmio) : gate
      if ((gate[5]! & 0x80) !== 0) return emulationFailureExit()
    }
    if (v === DF_VECTOR) return { kind: 'shutdown' }
    v = DF_VECTOR
  }
}

/** EXIT_REASON_EPT_VIOLATION (SDM vol. 3, appendix C, "VMX Basic Exit Reasons"). */
const EXIT_REASON_EPT_VIOLATION = 48n
/**
 * The exit qualification of an EPT violation (SDM vol. 3C, "Exit Qualification for EPT Violations"): bit 0
 * data read, bit 2 instruction fetch, bit 7 guest linear address valid, bit 8 access to the translated address.
 */
const QUAL_READ = 0x181n
const QUAL_FETCH = 0x184n

/**
 * kvm_prepare_event_vectoring_exit(): KVM_INTERNAL_ERROR_DELIVERY_EV with ndata 5: the IDT-vectoring
 * information (valid, hardware exception, error code valid, vector; SDM vol. 3C, "Information for VM
 * Exits During Event Delivery"), the exit
 * reason, the exit qualification, the GPA whose access failed and last_vmentry_cpu (the emulator's is 0).
 */
export function deliveryEventExit(vector: number, gpa: bigint): VcpuExit {
  const info = 0x8000_0000n | (3n << 8n) | (ERROR_CODE_VECTORS.has(vector) ? 0x800n : 0n) | BigInt(vector)
  return {
    kind: 'internal_error',
    suberror: KVM_INTERNAL_ERROR_DELIVERY_EV,
    data: [info, EXIT_REASON_EPT_VIOLATION, QUAL_READ, gpa, 0n],
  }
}

/**
 * prepare_emulation_failure_exit() after an instruction fetch KVM cannot emulate (no memslot behind the
 * code, or no program at all): KVM_INTERNAL_ERROR_EMULATION with ndata 6: the flags (0: no instruction
 * bytes were fetched), then the exit reason, qualification, IDT-vectoring info, interruption info and
 * error code of the EPT violation that sent KVM to its emulator.
 */
export function emulationFailureExit(): VcpuExit {
  return {
    kind: 'internal_error',
    suberror: KVM_INTERNAL_ERROR_EMULATION,
    data: [0n, EXIT_REASON_EPT_VIOLATION, QUAL_FETCH, 0n, 0n, 0n],
  }
}
