// Where this project's machines differ from upstream KVM for memslot and guest_memfd calls, each with
// the reason. The emulator keeps upstream semantics; the differential test accepts exactly these
// differences and no others. (Capability values are not deviations: the `pvm-6.18` profile states them.)

import type { Op } from './ops.ts'

export interface Deviation {
  /** What differs, in one line. */
  summary: string
  /** Why the host behaves so, with the evidence. */
  reason: string
  applies(op: Op, emulator: string, native: string): boolean
}

export const DEVIATIONS: readonly Deviation[] = []

export function findDeviation(op: Op, emulator: string, native: string): Deviation | undefined {
  return DEVIATIONS.find((d) => d.applies(op, emulator, native))
}
