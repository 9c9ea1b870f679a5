// ucall: how a guest program talks to the host, as upstream's ucall.c (GUEST_SYNC, GUEST_DONE).
//
// A guest program signals by port I/O (harness/guest-program.ts, the `signal` step). The port says
// which call it is and the 32-bit value is its argument, so every backend reports the same io exits.

import type { VcpuExit } from '../backend.ts'
import type { GuestStep } from '../guest-program.ts'

export const UCALL_SYNC = 0x10
export const UCALL_DONE = 0x11

export type Ucall = { cmd: 'sync'; value: number } | { cmd: 'done' }

/** The ucall an exit carries, or undefined when the exit is something else. */
export function getUcall(exit: VcpuExit): Ucall | undefined {
  if (exit.kind !== 'io' || exit.direction !== 'out' || exit.size !== 4) return undefined
  const value = new DataView(exit.data.buffer, exit.data.byteOffset, exit.data.byteLength).getUint32(0, true)
  if (exit.port === UCALL_SYNC) return { cmd: 'sync', value }
  if (exit.port === UCALL_DONE) return { cmd: 'done' }
  return undefined
}

/** GUEST_SYNC(value); without a value, the accumulator (what the guest last read). */
export const guestSync = (value?: number): GuestStep =>
  value === undefined ? { op: 'signal', port: UCALL_SYNC } : { op: 'signal', port: UCALL_SYNC, value }

export const guestDone = (): GuestStep => ({ op: 'signal', port: UCALL_DONE, value: 0 })

/** How an exit reads in a failure message. */
export function describeExit(exit: VcpuExit): string {
  switch (exit.kind) {
    case 'io':
      return `io ${exit.direction} port 0x${exit.port.toString(16)} size ${exit.size}`
    case 'mmio':
      return `mmio ${exit.isWrite ? 'write' : 'read'} of ${exit.len} bytes at 0x${exit.physAddr.toString(16)}`
    case 'internal_error':
      return `internal_error suberror ${exit.suberror} data [${exit.data.map((d) => `0x${d.toString(16)}`).join(', ')}]`
    case 'memory_fault':
      return `memory_fault ${exit.errno} flags 0x${exit.flags.toString(16)} gpa 0x${exit.gpa.toString(16)} size ${exit.size}`
    case 'fail_entry':
      return `fail_entry reason 0x${exit.reason.toString(16)}`
    case 'other':
      return `exit reason ${exit.exitReason}`
    default:
      return exit.kind
  }
}
