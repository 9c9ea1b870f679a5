// Errors as values a test can assert on.
//
// KvmError is spelled as Node's own SystemError (`code`, `errno`, `syscall`-like `op`) so that nobody
// has to learn a second convention: tests assert `rejects.toMatchObject({ code: 'EINVAL' })`.
// Recognise errors with the static `is()` guards, never `instanceof`: an error that crossed a worker
// thread, a vitest pool boundary or the remote agent's network hop is a plain object by then.

import { errnoName, errnoNumber, type ErrnoName } from './uapi/errno.ts'

const KVM_ERROR = 'KvmError'
const HOST_FAULT = 'HostFault'
const TIMEOUT = 'VcpuTimeout'

/** A kernel call failed: the errno it returned and the operation (ioctl or syscall name). */
export class KvmError extends Error {
  override readonly name = KVM_ERROR
  /** The errno's name, for example `'EINVAL'`. Tests assert on this. */
  readonly code: ErrnoName | string
  /** The errno's number on this architecture (x86-64). */
  readonly errno: number
  /** The ioctl or syscall that failed, for example `'KVM_SET_USER_MEMORY_REGION2'`. */
  readonly op: string

  constructor(code: ErrnoName | number, op: string, detail?: string) {
    const name = typeof code === 'number' ? errnoName(code) : code
    super(`${op}: ${name}${detail ? ` (${detail})` : ''}`)
    this.code = name
    this.errno = typeof code === 'number' ? code : errnoNumber(code)
    this.op = op
  }

  static is(e: unknown): e is KvmError {
    return typeof e === 'object' && e !== null && (e as { name?: unknown }).name === KVM_ERROR &&
      typeof (e as { code?: unknown }).code === 'string' && typeof (e as { op?: unknown }).op === 'string'
  }
}

/**
 * A host access to a mapping raised a signal instead of completing: SIGBUS for guest_memfd pages that
 * are private or lie past the end of the file, SIGSEGV for an unmapped address. The native backend
 * catches the signal around the access; the emulator raises the same outcome from its rules.
 */
export class HostFault extends Error {
  override readonly name = HOST_FAULT
  readonly code: 'SIGBUS' | 'SIGSEGV'
  readonly op: string
  /** The host virtual address of the first byte that faulted. */
  readonly address: bigint

  constructor(code: 'SIGBUS' | 'SIGSEGV', op: string, address: bigint) {
    super(`${op}: ${code} at 0x${address.toString(16)}`)
    this.code = code
    this.op = op
    this.address = address
  }

  static is(e: unknown): e is HostFault {
    return typeof e === 'object' && e !== null && (e as { name?: unknown }).name === HOST_FAULT
  }
}

/** A vCPU did not exit within its deadline and was kicked; the harness reports this as a timeout. */
export class VcpuTimeout extends Error {
  override readonly name = TIMEOUT
  readonly code = 'ETIMEDOUT'
  readonly timeoutMs: number

  constructor(op: string, timeoutMs: number) {
    super(`${op}: the vCPU did not exit within ${timeoutMs} ms and was kicked`)
    this.timeoutMs = timeoutMs
  }

  static is(e: unknown): e is VcpuTimeout {
    return typeof e === 'object' && e !== null && (e as { name?: unknown }).name === TIMEOUT
  }
}
