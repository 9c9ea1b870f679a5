// The emulated process's file-descriptor table.
//
// As in a real process: 0, 1 and 2 are open (stdio, not KVM files), a new file takes the lowest free
// number (so /dev/kvm, opened first, is 3), close() frees the number for reuse, and looking up a number
// that is not open is EBADF. Each entry says what kind of file it is, which is what KVM checks when a
// test passes an fd where a guest_memfd is wanted.

import type { MemoryObject } from './address-space.ts'
import type { GuestMemfdFile } from './guest-memfd.ts'
import type { Userfaultfd } from './userfaultfd.ts'
import type { VcpuState } from './vcpu.ts'
import type { VmState } from './vm.ts'

export type OpenFile =
  | { readonly kind: 'stdio' }
  /** /dev/kvm */
  | { readonly kind: 'kvm' }
  | { readonly kind: 'vm'; readonly vm: VmState }
  | { readonly kind: 'vcpu'; readonly vcpu: VcpuState }
  | { readonly kind: 'guest_memfd'; readonly file: GuestMemfdFile }
  /** memfd_create() behind a shmem mapping. */
  | { readonly kind: 'memfd'; readonly object: MemoryObject }
  /** userfaultfd(2) or USERFAULTFD_IOC_NEW on /dev/userfaultfd. */
  | { readonly kind: 'userfaultfd'; readonly uffd: Userfaultfd }

/** RLIMIT_NOFILE: the kernel's default hard limit. */
export const DEFAULT_FD_LIMIT = 1 << 20

export class FdTable<F extends { readonly kind: string } = OpenFile> {
  private readonly files = new Map<number, F>()
  /** Numbers below `next` that were closed, as a min-heap: the lowest is reused first. */
  private readonly freed: number[] = []
  private next = 0

  constructor(
    stdio: F,
    private readonly limit = DEFAULT_FD_LIMIT,
  ) {
    for (let fd = 0; fd < 3; fd++) this.install(stdio)
  }

  /** Installs `file` at the lowest free number; EMFILE past RLIMIT_NOFILE. */
  install(file: F): number | 'EMFILE' {
    let fd: number
    if (this.freed.length > 0) fd = popMin(this.freed)
    else if (this.next < this.limit) fd = this.next++
    else return 'EMFILE'
    this.files.set(fd, file)
    return fd
  }

  /** The open file behind `fd`, or EBADF. */
  get(fd: number): F | 'EBADF' {
    return this.files.get(fd) ?? 'EBADF'
  }

  /** close(fd): the file that was open there, or EBADF. */
  close(fd: number): F | 'EBADF' {
    const file = this.files.get(fd)
    if (file === undefined) return 'EBADF'
    this.files.delete(fd)
    pushMin(this.freed, fd)
    return file
  }

  /** The open descriptors, lowest first. */
  openFds(): number[] {
    return [...this.files.keys()].sort((a, b) => a - b)
  }
}

function pushMin(heap: number[], value: number): void {
  heap.push(value)
  let i = heap.length - 1
  while (i > 0) {
    const parent = (i - 1) >> 1
    if (heap[parent]! <= value) break
    heap[i] = heap[parent]!
    i = parent
  }
  heap[i] = value
}

function popMin(heap: number[]): number {
  const top = heap[0]!
  const last = heap.pop()!
  if (heap.length > 0) {
    let i = 0
    for (;;) {
      const left = 2 * i + 1
      if (left >= heap.length) break
      const right = left + 1
      const child = right < heap.length && heap[right]! < heap[left]! ? right : left
      if (heap[child]! >= last) break
      heap[i] = heap[child]!
      i = child
    }
    heap[i] = last
  }
  return top
}
