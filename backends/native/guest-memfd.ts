// GuestMemfd over the addon: a KVM_CREATE_GUEST_MEMFD file (FD_CLOEXEC set by the addon) and the
// file operations the suites try on it. Each is the real syscall; guest_memfd refuses most of them.

import type { GuestMemfd, GuestMemfdStat, HostMapping, U64In } from '../../harness/backend.ts'
import { type Handle, native } from './addon.ts'
import type { NativeContext } from './context.ts'
import { NativeHostMapping } from './host-mapping.ts'
import { count, int, loff, u64 } from './u64.ts'

export class NativeGuestMemfd implements GuestMemfd {
  readonly fd: number

  constructor(private readonly ctx: NativeContext, readonly handle: Handle, readonly flags: bigint) {
    this.fd = native(() => ctx.addon.gmemFd(handle))
    ctx.track(this)
  }

  /** fstat(2) */
  async stat(): Promise<GuestMemfdStat> {
    return native(() => this.ctx.addon.gmemStat(this.handle))
  }

  /** read(2) */
  async read(length: number): Promise<Uint8Array> {
    const len = count(length, 'length')
    return native(() => this.ctx.addon.gmemRead(this.handle, len))
  }

  /** write(2) */
  async write(data: Uint8Array): Promise<number> {
    return native(() => this.ctx.addon.gmemWrite(this.handle, data))
  }

  /** pread(2) */
  async pread(length: number, offset: U64In): Promise<Uint8Array> {
    const len = count(length, 'length')
    const off = loff(offset, 'offset')
    return native(() => this.ctx.addon.gmemPread(this.handle, len, off))
  }

  /** pwrite(2) */
  async pwrite(data: Uint8Array, offset: U64In): Promise<number> {
    const off = loff(offset, 'offset')
    return native(() => this.ctx.addon.gmemPwrite(this.handle, data, off))
  }

  /** fallocate(2) */
  async fallocate(mode: number, offset: U64In, length: U64In): Promise<void> {
    const m = int(mode, 'mode')
    const off = loff(offset, 'offset')
    const len = loff(length, 'length')
    native(() => this.ctx.addon.gmemFallocate(this.handle, m, off, len))
  }

  /**
   * mmap(2) of the file, PROT_READ | PROT_WRITE, MAP_SHARED unless `shared: false` (MAP_PRIVATE), at an
   * address that is a multiple of `align` (0 or a power of two) when given.
   */
  async mmap(opts: { length: U64In; offset?: U64In; shared?: boolean; align?: U64In }): Promise<HostMapping> {
    const length = u64(opts.length, 'length')
    const offset = u64(opts.offset ?? 0, 'offset')
    const shared = opts.shared ?? true
    const align = u64(opts.align ?? 0, 'align')
    return new NativeHostMapping(this.ctx,
      native(() => this.ctx.addon.gmemMmap(this.handle, length, offset, shared, align)))
  }

  async close(): Promise<void> {
    native(() => this.ctx.addon.gmemClose(this.handle))
    this.ctx.untrack(this)
  }
}
