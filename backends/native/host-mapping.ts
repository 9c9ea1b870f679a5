// HostMapping over the addon: an mmap(2) in this process. Accesses run on the addon's own threads
// (a fault on a userfaultfd-registered page waits there, not on the event loop) with SIGBUS/SIGSEGV
// caught and reported as HostFault. A closed mapping is never touched: its methods reject with
// KvmError EBADF (the C++ handle is gone), not with a SIGSEGV.

import type { Backing, HostMapping, U64In } from '../../harness/backend.ts'
import { type Handle, native, nativeAsync } from './addon.ts'
import type { NativeContext } from './context.ts'
import { count, int, u64 } from './u64.ts'

export class NativeHostMapping implements HostMapping {
  readonly addr: bigint
  readonly size: bigint
  readonly backing: Backing | 'guest_memfd'
  readonly fd: number | null

  constructor(private readonly ctx: NativeContext, readonly handle: Handle) {
    const info = native(() => ctx.addon.mappingInfo(handle))
    this.addr = info.addr
    this.size = info.size
    this.backing = info.backing as Backing | 'guest_memfd'
    this.fd = info.fd
    ctx.track(this)
  }

  async read(offset: U64In, length: number): Promise<Uint8Array> {
    const off = u64(offset, 'offset')
    const len = count(length, 'length')
    return nativeAsync(() => this.ctx.addon.mappingRead(this.handle, off, len))
  }

  async write(offset: U64In, data: Uint8Array): Promise<void> {
    const off = u64(offset, 'offset')
    return nativeAsync(() => this.ctx.addon.mappingWrite(this.handle, off, data))
  }

  async fill(offset: U64In, length: U64In, byte: number): Promise<void> {
    const off = u64(offset, 'offset')
    const len = u64(length, 'length')
    return nativeAsync(() => this.ctx.addon.mappingFill(this.handle, off, len, byte))
  }

  async findMismatch(offset: U64In, length: U64In, byte: number): Promise<bigint> {
    const off = u64(offset, 'offset')
    const len = u64(length, 'length')
    return nativeAsync(() => this.ctx.addon.mappingFindMismatch(this.handle, off, len, byte))
  }

  /** mmap(2) of the same file again, MAP_SHARED; anonymous memory has no file: EINVAL from 'mmap'. */
  async alias(): Promise<HostMapping> {
    return new NativeHostMapping(this.ctx, native(() => this.ctx.addon.mappingAlias(this.handle)))
  }

  /** madvise(2) over [offset, offset + length) (default: from offset to the end), on an addon thread. */
  async madvise(advice: number, offset: U64In = 0, length?: U64In): Promise<void> {
    const a = int(advice, 'advice')
    const off = u64(offset, 'offset')
    const len = length === undefined ? (off <= this.size ? this.size - off : 0n) : u64(length, 'length')
    return nativeAsync(() => this.ctx.addon.mappingMadvise(this.handle, a, off, len))
  }

  async close(): Promise<void> {
    native(() => this.ctx.addon.mappingClose(this.handle))
    this.ctx.untrack(this)
  }
}
