// The rule files answer with errno names and host faults as values; these turn them into the errors
// the contract promises, named after the ioctl or syscall (harness/errors.ts).

import { HostFault, KvmError } from '../../../harness/errors.ts'
import type { ErrnoName } from '../../../harness/uapi/errno.ts'
import { isFault, type Fault } from '../address-space.ts'

/** Rejects with `code` from `op`, or hands back the rule's result. */
export function check<T>(op: string, result: T | ErrnoName, detail?: string): Exclude<T, ErrnoName> {
  if (typeof result === 'string') throw new KvmError(result as ErrnoName, op, detail)
  return result as Exclude<T, ErrnoName>
}

/** Throws HostFault for a host access that would have raised a signal, or hands back its result. */
export function hostAccess<T>(op: string, result: T | Fault): T {
  if (isFault(result)) throw new HostFault(result.fault, op, result.address)
  return result
}
