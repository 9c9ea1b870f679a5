// Uffd over the addon: a userfaultfd and its UFFDIO_* ioctls, issued on the main thread (none of them
// waits for a fault). readEvents() never blocks, whatever flags the fd was opened with.

import type { U64In, Uffd, UffdEvent } from '../../harness/backend.ts'
import { type Handle, native } from './addon.ts'
import type { NativeContext } from './context.ts'
import { count, u64 } from './u64.ts'

/** include/uapi/linux/userfaultfd.h */
const UFFD_EVENT_PAGEFAULT = 0x12

export class NativeUffd implements Uffd {
  readonly fd: number

  constructor(private readonly ctx: NativeContext, readonly handle: Handle) {
    this.fd = native(() => ctx.addon.uffdFd(handle))
    ctx.track(this)
  }

  /** UFFDIO_API */
  async api(features: U64In = 0): Promise<{ features: bigint; ioctls: bigint }> {
    const f = u64(features, 'features')
    const r = native(() => this.ctx.addon.uffdApi(this.handle, f))
    return { features: r.features, ioctls: r.ioctls }
  }

  /** UFFDIO_REGISTER */
  async register(range: { start: U64In; len: U64In }, mode: number): Promise<{ ioctls: bigint }> {
    const start = u64(range.start, 'start')
    const len = u64(range.len, 'len')
    const m = u64(mode, 'mode')
    return { ioctls: native(() => this.ctx.addon.uffdRegister(this.handle, start, len, m)) }
  }

  /** UFFDIO_UNREGISTER */
  async unregister(range: { start: U64In; len: U64In }): Promise<void> {
    const start = u64(range.start, 'start')
    const len = u64(range.len, 'len')
    native(() => this.ctx.addon.uffdUnregister(this.handle, start, len))
  }

  /** UFFDIO_COPY */
  async copy(op: { dst: U64In; data: Uint8Array; mode?: number }): Promise<bigint> {
    const dst = u64(op.dst, 'dst')
    const mode = u64(op.mode ?? 0, 'mode')
    return native(() => this.ctx.addon.uffdCopy(this.handle, dst, op.data, mode))
  }

  /** UFFDIO_ZEROPAGE */
  async zeropage(op: { start: U64In; len: U64In; mode?: number }): Promise<bigint> {
    const start = u64(op.start, 'start')
    const len = u64(op.len, 'len')
    const mode = u64(op.mode ?? 0, 'mode')
    return native(() => this.ctx.addon.uffdZeropage(this.handle, start, len, mode))
  }

  /** UFFDIO_CONTINUE */
  async continue(op: { start: U64In; len: U64In; mode?: number }): Promise<bigint> {
    const start = u64(op.start, 'start')
    const len = u64(op.len, 'len')
    const mode = u64(op.mode ?? 0, 'mode')
    return native(() => this.ctx.addon.uffdContinue(this.handle, start, len, mode))
  }

  /** UFFDIO_WAKE */
  async wake(range: { start: U64In; len: U64In }): Promise<void> {
    const start = u64(range.start, 'start')
    const len = u64(range.len, 'len')
    native(() => this.ctx.addon.uffdWake(this.handle, start, len))
  }

  /** read(2) of pending uffd_msg records, without blocking. */
  async readEvents(max = 64): Promise<UffdEvent[]> {
    const n = count(max, 'max')
    return native(() => this.ctx.addon.uffdReadEvents(this.handle, n)).map((m): UffdEvent =>
      m.event === UFFD_EVENT_PAGEFAULT
        ? { kind: 'pagefault', address: m.address, flags: m.flags }
        : { kind: 'other', event: m.event })
  }

  async close(): Promise<void> {
    native(() => this.ctx.addon.uffdClose(this.handle))
    this.ctx.untrack(this)
  }
}
