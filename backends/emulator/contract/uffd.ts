// A userfaultfd of the emulated process over ../userfaultfd.ts, ../uffd-registrations.ts and
// ../uffd-mfill.ts.

import type { U64In, Uffd, UffdEvent } from '../../../harness/backend.ts'
import { KvmError } from '../../../harness/errors.ts'
import { UFFD_API } from '../../../harness/uapi/userfaultfd.ts'
import { count, u64 } from '../u64.ts'
import { register, unregister, validateRange } from '../uffd-registrations.ts'
import { checkMfill, dontWake, mfill, type MfillOp } from '../uffd-mfill.ts'
import { Userfaultfd } from '../userfaultfd.ts'
import { check } from './errors.ts'
import type { EmulatorBackend } from './backend.ts'

/**
 * A userfaultfd of the emulated process (userfaultfd.ts, uffd-registrations.ts, uffd-mfill.ts). Every
 * call on a closed one is EBADF; every call but UFFDIO_API, before a successful UFFDIO_API, is EINVAL
 * (userfaultfd_ioctl(), userfaultfd_read()). None of them waits.
 */
export class EmulatorUffd implements Uffd {
  private closed = false

  constructor(
    private readonly backend: EmulatorBackend,
    readonly ctx: Userfaultfd,
    readonly fd: number,
  ) {}

  private live(op: string): Userfaultfd {
    if (this.closed) throw new KvmError('EBADF', op, `userfaultfd ${this.fd} is closed`)
    if (op !== 'UFFDIO_API' && !this.ctx.initialized) throw new KvmError('EINVAL', op, 'no UFFDIO_API yet')
    return this.ctx
  }

  /** UFFDIO_API with api = UFFD_API. */
  async api(features: U64In = 0): Promise<{ features: bigint; ioctls: bigint }> {
    const requested = u64(features, 'features')
    return check('UFFDIO_API', this.live('UFFDIO_API').api(BigInt(UFFD_API), requested))
  }

  /** UFFDIO_REGISTER */
  async register(range: { start: U64In; len: U64In }, mode: number): Promise<{ ioctls: bigint }> {
    const start = u64(range.start, 'start')
    const len = u64(range.len, 'len')
    const m = u64(mode, 'mode')
    return { ioctls: check('UFFDIO_REGISTER', register(this.backend.memory, this.live('UFFDIO_REGISTER'), start, len, m)) }
  }

  /** UFFDIO_UNREGISTER: wakes the waiters of the range's MISSING-registered parts, then unregisters it. */
  async unregister(range: { start: U64In; len: U64In }): Promise<void> {
    const start = u64(range.start, 'start')
    const len = u64(range.len, 'len')
    check('UFFDIO_UNREGISTER', unregister(this.backend.memory, this.live('UFFDIO_UNREGISTER'), start, len) ?? null)
  }

  /** UFFDIO_COPY */
  async copy(op: { dst: U64In; data: Uint8Array; mode?: number }): Promise<bigint> {
    if (!(op.data instanceof Uint8Array)) throw new TypeError('data: expected a Uint8Array')
    return this.mfill('UFFDIO_COPY', { kind: 'copy', dst: u64(op.dst, 'dst'), data: op.data, mode: u64(op.mode ?? 0, 'mode') })
  }

  /** UFFDIO_ZEROPAGE */
  async zeropage(op: { start: U64In; len: U64In; mode?: number }): Promise<bigint> {
    return this.mfill('UFFDIO_ZEROPAGE', { kind: 'zeropage', dst: u64(op.start, 'start'), len: u64(op.len, 'len'), mode: u64(op.mode ?? 0, 'mode') })
  }

  /** UFFDIO_CONTINUE */
  async continue(op: { start: U64In; len: U64In; mode?: number }): Promise<bigint> {
    return this.mfill('UFFDIO_CONTINUE', { kind: 'continue', dst: u64(op.start, 'start'), len: u64(op.len, 'len'), mode: u64(op.mode ?? 0, 'mode') })
  }

  /**
   * userfaultfd_copy() and friends: the checks, mfill_atomic(), then a wake of [dst, dst + done) unless
   * DONTWAKE; nothing done -> the error; part of the range done -> EAGAIN.
   */
  private mfill(name: string, op: MfillOp): bigint {
    const ctx = this.live(name)
    check(name, checkMfill(op) ?? null)
    const r = mfill(this.backend.memory, op)
    if (r.done === 0n) throw new KvmError(r.error ?? 'EINVAL', name)
    if (!dontWake(op)) ctx.wake(op.dst, r.done)
    if (r.error !== undefined) throw new KvmError('EAGAIN', name, `${r.done} bytes done, then ${r.error}`)
    return r.done
  }

  /** UFFDIO_WAKE: wakes the waiters of the range (registered or not). */
  async wake(range: { start: U64In; len: U64In }): Promise<void> {
    const start = u64(range.start, 'start')
    const len = u64(range.len, 'len')
    const ctx = this.live('UFFDIO_WAKE')
    check('UFFDIO_WAKE', validateRange(start, len) ?? null)
    ctx.wake(start, len)
  }

  /** read(2) of pending uffd_msg records, without blocking; each message is read once. */
  async readEvents(max = 64): Promise<UffdEvent[]> {
    const n = count(max, 'max')
    if (this.closed) throw new KvmError('EBADF', 'read', `userfaultfd ${this.fd} is closed`)
    if (n === 0) return []
    return this.live('read').read(n).map((m): UffdEvent => ({ kind: 'pagefault', address: m.address, flags: m.flags }))
  }

  /** close(2): userfaultfd_release() unregisters everything it covers and wakes every waiter. */
  async close(): Promise<void> {
    if (this.closed) throw new KvmError('EBADF', 'close', `userfaultfd ${this.fd} is closed`)
    this.closed = true
    this.backend.memory.uffd.clearUffd(this.ctx)
    this.ctx.release()
    this.backend.fds.close(this.fd)
    this.backend.uffds.delete(this)
  }
}
