// A userfaultfd (struct userfaultfd_ctx, fs/userfaultfd.c): its flags, the UFFDIO_API handshake, and the
// threads waiting on it. A fault that handle_userfault() reports queues a waiter whose uffd_msg read(2)
// hands out once (fault_pending_wqh, then fault_wqh); the waiter sleeps until a wake covers its address
// (UFFDIO_COPY/ZEROPAGE/CONTINUE without DONTWAKE, UFFDIO_WAKE, UFFDIO_UNREGISTER of a MISSING range,
// close()), or until its thread gives up (a signal, where the sleep is interruptible). A waiter woken or
// gone before its message was read takes the message with it, as in the kernel: the message is the
// waiter's own wait-queue entry.
//
// Which ranges a userfaultfd covers lives with the address space (uffd-registrations.ts), as in the
// kernel it lives in each VMA. State and rules only: contract/ turns errnos into KvmError.

import type { ErrnoName } from '../../harness/uapi/errno.ts'
import {
  UFFD_API, UFFD_API_IOCTLS, UFFD_FEATURE_WP_ASYNC, UFFD_FEATURE_WP_UNPOPULATED, UFFD_USER_MODE_ONLY,
} from '../../harness/uapi/userfaultfd.ts'

/** O_CLOEXEC and O_NONBLOCK (UFFD_SHARED_FCNTL_FLAGS), and UFFD_USER_MODE_ONLY. */
const O_NONBLOCK = 0o4000
const O_CLOEXEC = 0o2000000
const UFFD_VALID_FLAGS = O_NONBLOCK | O_CLOEXEC | UFFD_USER_MODE_ONLY

/**
 * UFFD_API_FEATURES as 6.18 reports it on x86-64 (measured on the project's host: 0x1ffff, every
 * feature through UFFD_FEATURE_MOVE; CONFIG_HAVE_ARCH_USERFAULTFD_MINOR and _WP and PTE markers are set).
 */
export const UFFD_API_FEATURES = (1n << 17n) - 1n

/** new_userfaultfd(): flags other than O_CLOEXEC, O_NONBLOCK and UFFD_USER_MODE_ONLY -> EINVAL. */
export function checkUserfaultfdFlags(flags: number): ErrnoName | undefined {
  return (flags & ~UFFD_VALID_FLAGS) !== 0 ? 'EINVAL' : undefined
}

/** uffd_msg's pagefault view, as read(2) returns it. */
export interface PagefaultMsg {
  address: bigint
  flags: bigint
}

/** What a sleeping fault waits on, for whoever sleeps (a vCPU's KVM_RUN, KVM_PRE_FAULT_MEMORY). */
export interface UffdWait {
  /** Settles once a wake covers the fault (or the userfaultfd is released). */
  readonly woken: Promise<void>
  /** The sleeper gives up (a signal): the waiter leaves the queues, its unread message with it. */
  cancel(): void
}

class Waiter implements UffdWait {
  readonly woken: Promise<void>
  private resolve!: () => void
  /** Whether read(2) has handed out the message (moved to fault_wqh). */
  read = false

  constructor(
    private readonly ctx: Userfaultfd,
    readonly msg: PagefaultMsg,
  ) {
    this.woken = new Promise((r) => (this.resolve = r))
  }

  wake(): void {
    this.resolve()
  }

  cancel(): void {
    this.ctx.forget(this)
  }
}

export class Userfaultfd {
  /** ctx->features after UFFDIO_API; null before it (UFFD_FEATURE_INITIALIZED unset). */
  private features: bigint | null = null
  /** Waiters in fault order; each either unread (fault_pending_wqh) or read (fault_wqh). */
  private readonly waiters: Waiter[] = []
  private released = false

  constructor(readonly flags: number) {}

  /** userfaultfd_is_initialized(): every ioctl but UFFDIO_API, and read(2), are EINVAL before it. */
  get initialized(): boolean {
    return this.features !== null
  }

  get isReleased(): boolean {
    return this.released
  }

  get userModeOnly(): boolean {
    return (this.flags & UFFD_USER_MODE_ONLY) !== 0
  }

  has(feature: number): boolean {
    return ((this.features ?? 0n) & BigInt(feature)) !== 0n
  }

  /**
   * userfaultfd_api(): api != UFFD_API -> EINVAL; a feature this kernel lacks -> EINVAL; a second
   * successful UFFDIO_API (the cmpxchg on ctx->features) -> EINVAL. A failed call leaves the context
   * uninitialized, so it can be retried (measured). The answer reports every available feature, not the
   * requested ones, and the ioctls valid on the uffd itself.
   */
  api(api: bigint, requested: bigint): { features: bigint; ioctls: bigint } | ErrnoName {
    if (api !== BigInt(UFFD_API)) return 'EINVAL'
    let features = requested
    // WP_ASYNC relies on WP_UNPOPULATED, chosen unconditionally.
    if ((features & BigInt(UFFD_FEATURE_WP_ASYNC)) !== 0n) features |= BigInt(UFFD_FEATURE_WP_UNPOPULATED)
    if ((features & ~UFFD_API_FEATURES) !== 0n) return 'EINVAL'
    if (this.features !== null) return 'EINVAL'
    this.features = features
    return { features: UFFD_API_FEATURES, ioctls: UFFD_API_IOCTLS }
  }

  /** handle_userfault(): queues the fault's message and returns what its thread sleeps on. */
  fault(msg: PagefaultMsg): UffdWait {
    const w = new Waiter(this, msg)
    this.waiters.push(w)
    return w
  }

  /** userfaultfd_read() without blocking: up to `max` unread messages, oldest first, each handed out once. */
  read(max: number): PagefaultMsg[] {
    const out: PagefaultMsg[] = []
    for (const w of this.waiters) {
      if (out.length >= max) break
      if (w.read) continue
      w.read = true
      out.push({ ...w.msg })
    }
    return out
  }

  /** Messages queued and not yet read (for tests and poll()). */
  get pendingCount(): number {
    return this.waiters.filter((w) => !w.read).length
  }

  /** How many threads sleep on this userfaultfd. */
  get waiterCount(): number {
    return this.waiters.length
  }

  /**
   * wake_userfault() over [start, start + len): every waiter whose message address lies in the range,
   * read or not (userfaultfd_wake_function() compares the address the message carries).
   */
  wake(start: bigint, len: bigint): void {
    const end = start + len
    for (const w of [...this.waiters]) {
      if (w.msg.address >= start && w.msg.address < end) {
        this.forget(w)
        w.wake()
      }
    }
  }

  forget(w: Waiter): void {
    const i = this.waiters.indexOf(w)
    if (i >= 0) this.waiters.splice(i, 1)
  }

  /** userfaultfd_release(): the last close; every waiter is woken and later faults go by. */
  release(): void {
    this.released = true
    for (const w of this.waiters.splice(0)) w.wake()
  }
}
