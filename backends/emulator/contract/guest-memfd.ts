// A guest_memfd fd of the emulator over its file model (../guest-memfd.ts).

import type { GuestMemfd, GuestMemfdStat, HostMapping, U64In } from '../../../harness/backend.ts'
import { KvmError } from '../../../harness/errors.ts'
import { checkFallocate, checkMmap, punchHole, readWriteErrno, type GuestMemfdFile } from '../guest-memfd.ts'
import { PAGE_SIZE, isPageAligned, pageAlignUp } from '../page-store.ts'
import { count, int32, loff, u64 } from '../u64.ts'
import { check } from './errors.ts'
import type { EmulatorBackend } from './backend.ts'

export class EmulatorGuestMemfd implements GuestMemfd {
  readonly flags: bigint
  private closed = false

  constructor(
    private readonly backend: EmulatorBackend,
    readonly file: GuestMemfdFile,
    readonly fd: number,
  ) {
    this.flags = file.flags
  }

  private live(op: string): GuestMemfdFile {
    if (this.closed) throw new KvmError('EBADF', op, `guest_memfd fd ${this.fd} is closed`)
    return this.file
  }

  async stat(): Promise<GuestMemfdStat> {
    const file = this.live('fstat')
    return { size: file.size, blockSize: PAGE_SIZE, ino: file.ino }
  }

  async read(length: number): Promise<Uint8Array> {
    this.live('read')
    count(length, 'length')
    throw new KvmError(readWriteErrno(null), 'read')
  }

  async write(_data: Uint8Array): Promise<number> {
    this.live('write')
    throw new KvmError(readWriteErrno(null), 'write')
  }

  async pread(length: number, offset: U64In): Promise<Uint8Array> {
    return this.positioned('pread', length, offset)
  }

  async pwrite(data: Uint8Array, offset: U64In): Promise<number> {
    return this.positioned('pwrite', data.length, offset)
  }

  /** ksys_pread64()/ksys_pwrite64(): the position is checked before the fd is looked up. */
  private positioned(op: 'pread' | 'pwrite', length: number, offset: U64In): never {
    count(length, 'length')
    const position = loff(offset, 'offset')
    if (position < 0n) throw new KvmError('EINVAL', op)
    this.live(op)
    throw new KvmError(readWriteErrno({ position }), op)
  }

  async fallocate(mode: number, offset: U64In, length: U64In): Promise<void> {
    const file = this.live('fallocate')
    const action = check('fallocate', checkFallocate(file, int32(mode, 'mode'), loff(offset, 'offset'), loff(length, 'length')))
    if (action.kind === 'punch_hole') punchHole(file, action.offset, action.length)
  }

  async mmap(opts: { length: U64In; offset?: U64In; shared?: boolean }): Promise<HostMapping> {
    const length = u64(opts.length, 'length')
    const offset = u64(opts.offset ?? 0, 'offset')
    // sys_mmap(): an unaligned offset -> EINVAL; fget() -> EBADF; do_mmap(): len 0 -> EINVAL
    if (!isPageAligned(offset)) throw new KvmError('EINVAL', 'mmap', 'offset not page aligned')
    const file = this.live('mmap')
    if (length === 0n) throw new KvmError('EINVAL', 'mmap', 'length 0')
    if (offset + pageAlignUp(length) > (1n << 63n) - 1n) throw new KvmError('EOVERFLOW', 'mmap')
    check('mmap', checkMmap(file, opts.shared ?? true) ?? null)
    file.retain()
    return this.backend.map(file, length, offset, 'guest_memfd', this.fd, { file })
  }

  async close(): Promise<void> {
    const file = this.live('close')
    this.closed = true
    this.backend.fds.close(this.fd)
    this.backend.gmems.delete(this)
    file.release()
  }
}
