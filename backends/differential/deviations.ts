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

const LOFF_MAX = (1n << 63n) - 1n

export const DEVIATIONS: readonly Deviation[] = [
  {
    summary: 'kvm_gmem_bind() accepts a binding whose offset + size wraps a signed loff_t',
    reason:
      'kernel bug (upstream too): the bound check `offset + size > i_size_read(inode)` is computed in loff_t, ' +
      'so an offset near 2^63 wraps negative and passes; the emulator checks the bound exactly. ' +
      'Conformance test: set_memory_region > kvmconf additions.',
    applies: (op, emulator, native) =>
      op.op === 'setRegion' && op.v2 && emulator === 'EINVAL' && native === 'ok' && op.gmemOffset + op.size > LOFF_MAX,
  },
]

export function findDeviation(op: Op, emulator: string, native: string): Deviation | undefined {
  return DEVIATIONS.find((d) => d.applies(op, emulator, native))
}
