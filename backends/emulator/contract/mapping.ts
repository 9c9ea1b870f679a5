// A host mapping of the emulated process (mmap of anonymous memory, a memfd or a guest_memfd), its
// accesses meeting userfaultfd as the kernel's do (../host-access.ts).

import type { Backing, HostMapping, U64In } from '../../../harness/backend.ts'
import { HostFault, KvmError } from '../../../harness/errors.ts'
import { isFault, type Vma } from '../address-space.ts'
import type { GuestMemfdFile } from '../guest-memfd.ts'
import { bytesBefore, faultedIn, userfaultStop, type UserfaultStop } from '../host-access.ts'
import { byteValue } from '../inputs.ts'
import { madvise } from '../madvise.ts'
import { count, integer, u64 } from '../u64.ts'
import { check, hostAccess } from './errors.ts'
import type { EmulatorBackend } from './backend.ts'

export class EmulatorMapping implements HostMapping {
  readonly addr: bigint
  readonly size: bigint
  private closed = false

  constructor(
    private readonly backend: EmulatorBackend,
    private readonly vma: Vma,
    readonly backing: Backing | 'guest_memfd',
    readonly fd: number | null,
    private readonly owns: { closeFd?: boolean; file?: GuestMemfdFile },
  ) {
    this.addr = vma.start
    this.size = vma.end - vma.start
  }

  /**
   * A host access meets userfaultfd before anything else of it happens past the page it stops at
   * (host-access.ts): the bytes before are accessed, then a UFFD_FEATURE_SIGBUS userfaultfd raises SIGBUS
   * and any other rejects with EDEADLK where a real process would sleep until the page is resolved (the
   * emulator's one thread is the one that would resolve it). Pages reached get their PTEs.
   */
  private stopped(op: string, stop: UserfaultStop): never {
    if (stop.kind === 'sigbus') throw new HostFault('SIGBUS', op, stop.fault.address)
    throw new KvmError('EDEADLK', op, `the access would sleep on userfaultfd ${this.backend.uffdFd(stop.uffd)} ` +
      `for the ${stop.minor ? 'minor' : 'missing'} page at 0x${stop.address.toString(16)} until it is resolved; ` +
      'the emulator does not block host accesses (resolve the page first, or use UFFD_FEATURE_SIGBUS)')
  }

  async read(offset: U64In, length: number): Promise<Uint8Array> {
    const at = this.addr + u64(offset, 'offset')
    const len = count(length, 'length')
    const space = this.backend.memory
    const stop = userfaultStop(space, at, BigInt(len))
    const reach = Number(bytesBefore(stop, at, BigInt(len)))
    const bytes = space.read(at, reach)
    faultedIn(space, at, isFault(bytes) ? bytes.address : at + BigInt(reach), false)
    const data = hostAccess('HostMapping.read', bytes)
    if (stop !== undefined) this.stopped('HostMapping.read', stop)
    return data
  }

  async write(offset: U64In, data: Uint8Array): Promise<void> {
    const at = this.addr + u64(offset, 'offset')
    const space = this.backend.memory
    const stop = userfaultStop(space, at, BigInt(data.length))
    const reach = Number(bytesBefore(stop, at, BigInt(data.length)))
    const fault = space.write(at, reach === data.length ? data : data.subarray(0, reach))
    faultedIn(space, at, fault !== undefined ? fault.address : at + BigInt(reach), true)
    hostAccess('HostMapping.write', fault)
    if (stop !== undefined) this.stopped('HostMapping.write', stop)
  }

  /** Replaces the byte at `offset` with `f(old)` in one step (an atomic read-modify-write). */
  updateByte(offset: number, f: (old: number) => number): void {
    const at = this.addr + BigInt(offset)
    const [old] = hostAccess('HostMapping.read', this.backend.memory.read(at, 1))
    hostAccess('HostMapping.write', this.backend.memory.write(at, Uint8Array.of(f(old!))))
  }

  /** Where a byte-range access of `length` at `offset` starts, and how far it gets before a userfaultfd page. */
  private span(offset: U64In, length: U64In): { at: bigint; reach: bigint; stop: UserfaultStop | undefined } {
    const at = this.addr + u64(offset, 'offset')
    const len = u64(length, 'length')
    const stop = userfaultStop(this.backend.memory, at, len)
    return { at, reach: bytesBefore(stop, at, len), stop }
  }

  async fill(offset: U64In, length: U64In, byte: number): Promise<void> {
    const { at, reach, stop } = this.span(offset, length)
    const value = byteValue(byte)
    const space = this.backend.memory
    const fault = space.fill(at, reach, value)
    faultedIn(space, at, fault !== undefined ? fault.address : at + reach, true)
    hostAccess('HostMapping.fill', fault)
    if (stop !== undefined) this.stopped('HostMapping.fill', stop)
  }

  async findMismatch(offset: U64In, length: U64In, byte: number): Promise<bigint> {
    const { at, reach, stop } = this.span(offset, length)
    const value = byteValue(byte)
    const space = this.backend.memory
    const found = space.findMismatch(at, reach, value)
    // The scan reads up to the first mismatch (or the fault, or its end).
    faultedIn(space, at, isFault(found) ? found.address : found >= 0n ? at + found + 1n : at + reach, false)
    const r = hostAccess('HostMapping.findMismatch', found)
    if (r >= 0n || stop === undefined) return r
    return this.stopped('HostMapping.findMismatch', stop)
  }

  async madvise(advice: number, offset?: U64In, length?: U64In): Promise<void> {
    const off = u64(offset ?? 0, 'offset')
    const len = length === undefined ? (this.size > off ? this.size - off : 0n) : u64(length, 'length')
    check('madvise', madvise(this.backend.memory, this.addr + off, len, integer(advice, 'advice')) ?? null)
  }

  async alias(): Promise<HostMapping> {
    if (this.closed) throw new KvmError('EBADF', 'mmap', 'the mapping is closed')
    if (this.backing !== 'shmem' && this.backing !== 'guest_memfd') {
      throw new KvmError('EINVAL', 'mmap', `${this.backing} memory has no file to map twice`)
    }
    this.owns.file?.retain()
    const owns = this.owns.file ? { file: this.owns.file } : null
    return this.backend.map(this.vma.object, this.size, this.vma.offset, this.backing, this.fd, owns)
  }

  async close(): Promise<void> {
    if (this.closed) {
      // munmap() of a range no longer mapped succeeds; closing the memfd again does not.
      if (this.owns.closeFd) throw new KvmError('EBADF', 'close', `memfd ${this.fd} is closed`)
      return
    }
    this.closed = true
    this.backend.memory.unmap(this.vma)
    this.backend.mappings.delete(this)
    this.owns.file?.release()
    if (this.owns.closeFd && this.fd !== null) this.backend.fds.close(this.fd)
  }
}
