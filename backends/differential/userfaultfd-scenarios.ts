// userfaultfd sequences written once and run on any backend: the same calls through the contract, each
// call's outcome as a short line (`ok`, `ok <value>`, the errno name, or what a vCPU did), so two
// backends agree when their lines are equal. Addresses in the lines are relative to the mapping they
// fall in, so the backends' different host addresses do not show.
//
// The vCPU scenarios run a guest program that reads or writes a page of a userfaultfd-registered
// memslot, wait until the fault shows up as a UFFD_EVENT_PAGEFAULT, resolve it one way or another and
// report how KVM_RUN ended. "pending" means KVM_RUN had not returned 150 ms after the step: the vCPU is
// still blocked on the fault.

import type { Backend, HostMapping, Uffd, UffdEvent, Vcpu, VcpuExit, Vm } from '../../harness/backend.ts'
import { HostFault, KvmError, VcpuTimeout } from '../../harness/errors.ts'
import type { GuestStep } from '../../harness/guest-program.ts'
import { MADV_DONTNEED } from '../../harness/uapi/fs.ts'
import {
  UFFD_FEATURE_EXACT_ADDRESS,
  UFFD_FEATURE_SIGBUS,
  UFFD_USER_MODE_ONLY,
  UFFDIO_COPY_MODE_DONTWAKE,
  UFFDIO_COPY_MODE_WP,
  UFFDIO_REGISTER_MODE_MINOR,
  UFFDIO_REGISTER_MODE_MISSING,
  UFFDIO_REGISTER_MODE_WP,
} from '../../harness/uapi/userfaultfd.ts'
import { hex } from '../../harness/hex.ts'
import { setTimeout as sleep } from 'node:timers/promises'

const P = 4096n
/** The test memslot's GPA (1 GiB: clear of the boot slot, inside the identity map). */
const SLOT_GPA = 1n << 30n
const PENDING_MS = 150
const EVENT_WAIT_MS = 3000

/** The outcome lines of one scenario, and the mappings addresses are reported against. */
export class Outcomes {
  readonly lines: string[] = []
  private readonly bases: { name: string; m: HostMapping }[] = []

  constructor(readonly backend: Backend) {}

  /** Reports addresses inside `m` as `name+offset`. */
  name(name: string, m: HostMapping): HostMapping {
    this.bases.push({ name, m })
    return m
  }

  where(addr: bigint): string {
    for (const { name, m } of this.bases) if (addr >= m.addr && addr < m.addr + m.size) return `${name}+${hex(addr - m.addr)}`
    return hex(addr)
  }

  note(label: string, outcome: string): void {
    this.lines.push(`${label}: ${outcome}`)
  }

  /** Runs `p` and records `ok`, `ok <value>` or the error's code. */
  async call(label: string, p: Promise<unknown>): Promise<unknown> {
    try {
      const v = await p
      this.note(label, v === undefined ? 'ok' : `ok ${this.value(v)}`)
      return v
    } catch (e) {
      this.note(label, describeError(e))
      return undefined
    }
  }

  value(v: unknown): string {
    if (typeof v === 'bigint') return hex(v)
    if (v instanceof Uint8Array) return `[${[...v.subarray(0, 4)].join(',')}${v.length > 4 ? ',…' : ''}]`
    if (Array.isArray(v)) return `[${v.map((e) => this.value(e)).join(' ')}]`
    if (typeof v === 'object' && v !== null && 'kind' in v && (v as UffdEvent).kind === 'pagefault') {
      const e = v as Extract<UffdEvent, { kind: 'pagefault' }>
      return `pagefault ${this.where(e.address)} flags ${hex(e.flags)}`
    }
    if (typeof v === 'object' && v !== null) {
      return JSON.stringify(v, (_, x: unknown) => (typeof x === 'bigint' ? hex(x) : x))
    }
    return String(v)
  }

  async events(label: string, uffd: Uffd): Promise<void> {
    await this.call(label, uffd.readEvents())
  }
}

export function describeError(e: unknown): string {
  if (KvmError.is(e)) return e.code
  if (HostFault.is(e)) return e.code
  if (VcpuTimeout.is(e)) return 'timeout'
  return `throws ${String(e)}`
}

export function describeExit(exit: VcpuExit): string {
  switch (exit.kind) {
    case 'io':
      return `io port ${exit.port} value ${new DataView(exit.data.buffer, exit.data.byteOffset).getUint32(0, true)}`
    case 'mmio':
      return `mmio ${hex(exit.physAddr)} len ${exit.len} ${exit.isWrite ? 'write' : 'read'}`
    case 'memory_fault':
      return `memory_fault ${exit.errno} ${hex(exit.gpa)} flags ${hex(exit.flags)}`
    default:
      return exit.kind
  }
}

/** A KVM_RUN in flight, watched: whether it has ended and how. */
class Running {
  private outcome: string | null = null
  readonly done: Promise<string>

  constructor(run: Promise<VcpuExit>) {
    this.done = run.then(describeExit, describeError).then((o) => (this.outcome = o))
  }

  /** How KVM_RUN ended, or `pending` if it has not within `ms`. */
  async after(ms = PENDING_MS): Promise<string> {
    await Promise.race([this.done, sleep(ms)])
    return this.outcome ?? 'pending'
  }
}

/** A VM with slot 1 at SLOT_GPA over `mem`, and vCPU 0. */
async function vmOver(kvm: Backend, mem: HostMapping): Promise<{ vm: Vm; vcpu: Vcpu }> {
  const vm = await kvm.createVm()
  await vm.setUserMemoryRegion({ slot: 1, flags: 0, guestPhysAddr: SLOT_GPA, memorySize: mem.size, userspaceAddr: mem.addr })
  return { vm, vcpu: await vm.createVcpu(0) }
}

/** Guest: read byte `offset` of the slot, signal it on port 1, halt. */
function readProgram(offset: bigint): GuestStep[] {
  return [{ op: 'read', gva: SLOT_GPA + offset, width: 1 }, { op: 'signal', port: 1 }, { op: 'hlt' }]
}

/** Guest: write 0x99 at `offset`, signal 7, halt. */
function writeProgram(offset: bigint): GuestStep[] {
  return [{ op: 'write', gva: SLOT_GPA + offset, value: 0x99, width: 1 }, { op: 'signal', port: 1, value: 7 }, { op: 'hlt' }]
}

/** Polls readEvents() until something comes (bounded), recording the events. */
async function awaitEvents(o: Outcomes, label: string, uffd: Uffd): Promise<UffdEvent[]> {
  const started = Date.now()
  for (;;) {
    let events: UffdEvent[]
    try {
      events = await uffd.readEvents()
    } catch (e) {
      o.note(label, describeError(e))
      return []
    }
    if (events.length > 0 || Date.now() - started > EVENT_WAIT_MS) {
      o.note(label, o.value(events))
      return events
    }
    await sleep(5)
  }
}

async function opened(o: Outcomes, flags = 0, features = 0): Promise<Uffd> {
  const uffd = await o.backend.openUffd({ via: 'syscall', flags })
  await uffd.api(features)
  return uffd
}

export type Scenario = (o: Outcomes) => Promise<void>

/** The scenarios, by name. Each cleans up after itself (the backend is shared across scenarios). */
export const SCENARIOS: Record<string, Scenario> = {
  async 'open and UFFDIO_API'(o) {
    for (const flags of [0, 0x800, 0x80000, UFFD_USER_MODE_ONLY, 2, 0x10]) {
      await o.call(`userfaultfd(${hex(BigInt(flags))})`, o.backend.openUffd({ via: 'syscall', flags }).then((u) => u.close()))
    }
    await o.call('USERFAULTFD_IOC_NEW(2)', o.backend.openUffd({ via: 'dev', flags: 2 }))
    const u = await o.backend.openUffd({ via: 'dev' })
    const mem = o.name('anon', await o.backend.mmap({ size: 4n * P, backing: 'anonymous' }))
    await o.call('register before UFFDIO_API', u.register({ start: mem.addr, len: P }, UFFDIO_REGISTER_MODE_MISSING))
    await o.call('copy before UFFDIO_API', u.copy({ dst: mem.addr, data: new Uint8Array(4096) }))
    await o.call('zeropage before UFFDIO_API', u.zeropage({ start: mem.addr, len: P }))
    await o.call('wake before UFFDIO_API', u.wake({ start: mem.addr, len: P }))
    await o.call('unregister before UFFDIO_API', u.unregister({ start: mem.addr, len: P }))
    await o.call('read before UFFDIO_API', u.readEvents())
    await o.call('UFFDIO_API(1 << 17)', u.api(1 << 17))
    await o.call('UFFDIO_API(SIGBUS)', u.api(UFFD_FEATURE_SIGBUS))
    await o.call('UFFDIO_API again', u.api(0))
    await o.call('read, nothing pending', u.readEvents())
    await u.close()
    await o.call('UFFDIO_API after close', u.api(0))
    await mem.close()
  },

  async 'UFFDIO_REGISTER and UNREGISTER rules'(o) {
    const u = await opened(o)
    const kvm = o.backend
    const anon = o.name('anon', await kvm.mmap({ size: 8n * P, backing: 'anonymous' }))
    const shm = o.name('shm', await kvm.mmap({ size: 8n * P, backing: 'shmem' }))
    const reg = (label: string, start: bigint, len: bigint, mode: number, uffd = u) =>
      o.call(`register ${label}`, uffd.register({ start, len }, mode))
    await reg('mode 0', anon.addr, P, 0)
    await reg('mode 8', anon.addr, P, 8)
    await reg('MISSING|8', anon.addr, P, 9)
    await reg('unaligned start', anon.addr + 1n, P, 1)
    await reg('unaligned len', anon.addr, 100n, 1)
    await reg('len 0', anon.addr, 0n, 1)
    await reg('start 0', 0n, P, 1)
    await reg('nothing mapped', 0x10000n, P, 1)
    await reg('at TASK_SIZE', 0x7ffffffff000n, P, 1)
    await reg('past TASK_SIZE', 0x7fffffffe000n, 2n * P, 1)
    await reg('len wraps', anon.addr, (1n << 64n) - P, 1)
    await reg('MINOR on anonymous', anon.addr, P, UFFDIO_REGISTER_MODE_MINOR)
    await reg('MISSING|MINOR on anonymous', anon.addr, P, UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR)
    await reg('WP on anonymous', anon.addr, P, UFFDIO_REGISTER_MODE_WP)
    await reg('MISSING on anonymous', anon.addr, P, UFFDIO_REGISTER_MODE_MISSING)
    await reg('MISSING again', anon.addr, P, UFFDIO_REGISTER_MODE_MISSING)
    await reg('MISSING|WP on anonymous', anon.addr, P, UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP)
    await reg('MISSING on shmem', shm.addr, P, UFFDIO_REGISTER_MODE_MISSING)
    await reg('MINOR on shmem', shm.addr + P, P, UFFDIO_REGISTER_MODE_MINOR)
    await reg('MISSING|MINOR on shmem', shm.addr + 2n * P, P, UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR)
    await reg('all modes on shmem', shm.addr + 3n * P, P, 7)
    const other = await opened(o)
    await reg('by another uffd, same page', anon.addr, P, 1, other)
    await reg('by another uffd, next page', anon.addr + P, P, 1, other)
    await reg('by another uffd, both pages', anon.addr, 2n * P, 1, other)
    await o.call('unregister by another uffd', other.unregister({ start: anon.addr, len: P }))
    await o.call('unregister unaligned', u.unregister({ start: anon.addr + 1n, len: P }))
    await o.call('unregister len 0', u.unregister({ start: anon.addr, len: 0 }))
    await o.call('unregister a range never registered', u.unregister({ start: anon.addr + 4n * P, len: P }))
    await o.call('unregister nothing mapped', u.unregister({ start: 0x10000n, len: P }))
    await reg('anonymous then shmem, MINOR', shm.addr, shm.size + anon.size, UFFDIO_REGISTER_MODE_MINOR)
    await Promise.all([u.close(), other.close(), anon.close(), shm.close()])
  },

  async 'UFFDIO_COPY, ZEROPAGE and WAKE on anonymous memory'(o) {
    const u = await opened(o)
    const kvm = o.backend
    const mem = o.name('anon', await kvm.mmap({ size: 8n * P, backing: 'anonymous' }))
    const page = (b: number, pages = 1) => new Uint8Array(4096 * pages).fill(b)
    // Page 6 is read before registering (the zero page maps it), page 7 written.
    await o.call('host read of page 6', mem.read(6n * P, 4))
    await mem.write(7n * P, page(7))
    await mem.write(5n * P, page(5))
    await o.call('register pages 0..7 MISSING', u.register({ start: mem.addr, len: 8n * P }, UFFDIO_REGISTER_MODE_MISSING))
    await o.call('copy unaligned dst', u.copy({ dst: mem.addr + 8n, data: page(1) }))
    await o.call('copy of 100 bytes', u.copy({ dst: mem.addr, data: new Uint8Array(100) }))
    await o.call('copy of 0 bytes', u.copy({ dst: mem.addr, data: new Uint8Array(0) }))
    await o.call('copy mode 4', u.copy({ dst: mem.addr, data: page(1), mode: 4 }))
    await o.call('copy mode WP without WP registration', u.copy({ dst: mem.addr, data: page(1), mode: UFFDIO_COPY_MODE_WP }))
    await o.call('copy page 0', u.copy({ dst: mem.addr, data: page(1) }))
    await o.call('copy page 0 again', u.copy({ dst: mem.addr, data: page(2) }))
    await o.call('copy pages 0..1', u.copy({ dst: mem.addr, data: page(3, 2) }))
    await o.call('zeropage page 2', u.zeropage({ start: mem.addr + 2n * P, len: P }))
    await o.call('copy pages 1..2 (page 2 present)', u.copy({ dst: mem.addr + P, data: page(4, 2) }))
    await o.call('page 1 after the partial copy', mem.read(P, 4))
    await o.call('copy page 6 (the zero page)', u.copy({ dst: mem.addr + 6n * P, data: page(6) }))
    await o.call('copy page 7 (written)', u.copy({ dst: mem.addr + 7n * P, data: page(6) }))
    await o.call('zeropage mode 2', u.zeropage({ start: mem.addr + 3n * P, len: P, mode: 2 }))
    await o.call('zeropage unaligned len', u.zeropage({ start: mem.addr + 3n * P, len: 100 }))
    await o.call('zeropage page 2 again', u.zeropage({ start: mem.addr + 2n * P, len: P }))
    await o.call('zeropage pages 3..4', u.zeropage({ start: mem.addr + 3n * P, len: 2n * P }))
    await o.call('continue on anonymous', u.continue({ start: mem.addr + 5n * P, len: P }))
    await o.call('copy page 5 (written)', u.copy({ dst: mem.addr + 5n * P, data: page(6) }))
    await o.call('MADV_DONTNEED page 0', mem.madvise(MADV_DONTNEED, 0, P))
    await o.call('copy page 0 after MADV_DONTNEED', u.copy({ dst: mem.addr, data: page(8) }))
    await o.call('page 0', mem.read(0, 4))
    await o.call('wake len 0', u.wake({ start: mem.addr, len: 0 }))
    await o.call('wake unaligned', u.wake({ start: mem.addr + 1n, len: P }))
    await o.call('wake with nothing waiting', u.wake({ start: mem.addr, len: P }))
    await o.call('wake of nothing mapped', u.wake({ start: 0x10000n, len: P }))
    await o.call('unregister pages 0..3', u.unregister({ start: mem.addr, len: 4n * P }))
    await o.call('copy page 3 (unregistered)', u.copy({ dst: mem.addr + 3n * P, data: page(1) }))
    await o.call('copy pages 3..4 (half registered)', u.copy({ dst: mem.addr + 3n * P, data: page(1, 2) }))
    await o.call('copy nothing mapped', u.copy({ dst: 0x10000n, data: page(1) }))
    await o.call('events', u.readEvents())
    // UFFDIO_COPY needs the range registered, not registered with this userfaultfd.
    const fresh = o.name('fresh', await kvm.mmap({ size: 2n * P, backing: 'anonymous' }))
    await u.register({ start: fresh.addr, len: fresh.size }, UFFDIO_REGISTER_MODE_MISSING)
    const other = await opened(o)
    await o.call('copy through another uffd', other.copy({ dst: fresh.addr, data: page(9) }))
    await o.call('copy through another uffd, again', other.copy({ dst: fresh.addr, data: page(9) }))
    await o.call('zeropage through another uffd', other.zeropage({ start: fresh.addr + P, len: P }))
    await Promise.all([u.close(), other.close(), mem.close(), fresh.close()])
  },

  async 'shmem: MISSING, MINOR, UFFDIO_CONTINUE'(o) {
    const u = await opened(o)
    const kvm = o.backend
    const shm = o.name('shm', await kvm.mmap({ size: 8n * P, backing: 'shmem' }))
    const alias = o.name('alias', await shm.alias())
    const page = (b: number) => new Uint8Array(4096).fill(b)
    await alias.fill(0, P, 0x11) // page 0 in the page cache, mapped only by the alias
    await o.call('alias read of page 3 (a hole)', alias.read(3n * P, 4))
    await shm.fill(4n * P, P, 0x44) // page 4 mapped by the primary mapping too
    await alias.fill(5n * P, P, 0) // page 5 zero-filled through the alias
    await o.call('register MINOR', u.register({ start: shm.addr, len: 8n * P }, UFFDIO_REGISTER_MODE_MINOR))
    await o.call('continue page 0', u.continue({ start: shm.addr, len: P }))
    await o.call('page 0', shm.read(0, 4))
    await o.call('continue page 0 again', u.continue({ start: shm.addr, len: P }))
    await o.call('continue page 1 (not in the page cache)', u.continue({ start: shm.addr + P, len: P }))
    await o.call('continue page 3 (read through the alias)', u.continue({ start: shm.addr + 3n * P, len: P }))
    await o.call('continue page 4 (mapped)', u.continue({ start: shm.addr + 4n * P, len: P }))
    await o.call('continue page 5 (zero-filled through the alias)', u.continue({ start: shm.addr + 5n * P, len: P }))
    await o.call('continue mode 4', u.continue({ start: shm.addr, len: P, mode: 4 }))
    await o.call('continue unaligned', u.continue({ start: shm.addr + 1n, len: P }))
    await o.call('continue len 0', u.continue({ start: shm.addr, len: 0 }))
    await o.call('copy page 1 on MINOR', u.copy({ dst: shm.addr + P, data: page(0x22) }))
    await o.call('alias page 1', alias.read(P, 4))
    await o.call('copy page 0 (in the page cache)', u.copy({ dst: shm.addr, data: page(0x22) }))
    await o.call('zeropage page 2 on MINOR', u.zeropage({ start: shm.addr + 2n * P, len: P }))
    await o.call('MADV_DONTNEED page 0 of the primary', shm.madvise(MADV_DONTNEED, 0, P))
    await o.call('alias page 0 after DONTNEED', alias.read(0, 4))
    await o.call('continue page 0 after DONTNEED', u.continue({ start: shm.addr, len: P }))
    await o.call('continue pages 6..7 (not in the page cache)', u.continue({ start: shm.addr + 6n * P, len: 2n * P }))
    await alias.fill(6n * P, P, 0x66)
    await o.call('continue pages 6..7 (page 6 cached)', u.continue({ start: shm.addr + 6n * P, len: 2n * P }))
    await o.call('register MISSING over MINOR', u.register({ start: shm.addr, len: 8n * P }, UFFDIO_REGISTER_MODE_MISSING))
    await alias.fill(7n * P, P, 0x77)
    await o.call('continue page 7 on MISSING only', u.continue({ start: shm.addr + 7n * P, len: P }))
    await o.call('continue on the alias (unregistered)', u.continue({ start: alias.addr + 7n * P, len: P }))
    await o.call('events', u.readEvents())
    await Promise.all([u.close(), alias.close(), shm.close()])
  },

  async 'vCPU read on MISSING, resolved by UFFDIO_COPY'(o) {
    const u = await opened(o)
    const mem = o.name('anon', await o.backend.mmap({ size: 4n * P, backing: 'anonymous' }))
    const { vm, vcpu } = await vmOver(o.backend, mem)
    await vcpu.loadProgram({ steps: readProgram(P + 8n) })
    await o.call('register MISSING', u.register({ start: mem.addr, len: mem.size }, UFFDIO_REGISTER_MODE_MISSING))
    const running = new Running(vcpu.run({ timeoutMs: 10_000 }))
    await awaitEvents(o, 'events', u)
    o.note('KVM_RUN', await running.after())
    await o.call('copy page 1 with DONTWAKE', u.copy({ dst: mem.addr + P, data: new Uint8Array(4096).fill(0x5a), mode: UFFDIO_COPY_MODE_DONTWAKE }))
    o.note('KVM_RUN after DONTWAKE', await running.after())
    await o.call('events', u.readEvents())
    await o.call('wake page 0 only', u.wake({ start: mem.addr, len: P }))
    o.note('KVM_RUN after waking page 0', await running.after())
    await o.call('wake page 1', u.wake({ start: mem.addr + P, len: P }))
    o.note('KVM_RUN after waking page 1', await running.after(3000))
    await vm.close()
    await Promise.all([u.close(), mem.close()])
  },

  async 'vCPU write on MISSING: WRITE flag; WAKE without resolving faults again'(o) {
    const u = await opened(o)
    const mem = o.name('anon', await o.backend.mmap({ size: 4n * P, backing: 'anonymous' }))
    const { vm, vcpu } = await vmOver(o.backend, mem)
    await vcpu.loadProgram({ steps: writeProgram(2n * P + 100n) })
    await u.register({ start: mem.addr, len: mem.size }, UFFDIO_REGISTER_MODE_MISSING)
    const running = new Running(vcpu.run({ timeoutMs: 10_000 }))
    await awaitEvents(o, 'events', u)
    await o.call('wake page 2', u.wake({ start: mem.addr + 2n * P, len: P }))
    await awaitEvents(o, 'events after the wake', u)
    o.note('KVM_RUN', await running.after())
    await o.call('zeropage page 2', u.zeropage({ start: mem.addr + 2n * P, len: P }))
    o.note('KVM_RUN after zeropage', await running.after(3000))
    await o.call('page 2', mem.read(2n * P + 100n, 1))
    await o.call('events', u.readEvents())
    await vm.close()
    await Promise.all([u.close(), mem.close()])
  },

  async 'vCPU blocked on MISSING: unregister wakes it'(o) {
    const u = await opened(o)
    const mem = o.name('anon', await o.backend.mmap({ size: 4n * P, backing: 'anonymous' }))
    const { vm, vcpu } = await vmOver(o.backend, mem)
    await vcpu.loadProgram({ steps: readProgram(0n) })
    await u.register({ start: mem.addr, len: mem.size }, UFFDIO_REGISTER_MODE_MISSING)
    const running = new Running(vcpu.run({ timeoutMs: 10_000 }))
    await awaitEvents(o, 'events', u)
    await o.call('unregister page 3', u.unregister({ start: mem.addr + 3n * P, len: P }))
    o.note('KVM_RUN after unregistering page 3', await running.after())
    await o.call('unregister pages 0..2', u.unregister({ start: mem.addr, len: 3n * P }))
    o.note('KVM_RUN after unregistering page 0', await running.after(3000))
    await o.call('events', u.readEvents())
    await vm.close()
    await Promise.all([u.close(), mem.close()])
  },

  async 'vCPU blocked on MISSING: closing the uffd wakes it'(o) {
    const u = await opened(o)
    const mem = o.name('anon', await o.backend.mmap({ size: 4n * P, backing: 'anonymous' }))
    await mem.write(0, new Uint8Array([0x42]))
    const { vm, vcpu } = await vmOver(o.backend, mem)
    await vcpu.loadProgram({ steps: readProgram(P) })
    await u.register({ start: mem.addr, len: mem.size }, UFFDIO_REGISTER_MODE_MISSING)
    const running = new Running(vcpu.run({ timeoutMs: 10_000 }))
    await awaitEvents(o, 'events', u)
    await o.call('close the uffd', u.close())
    o.note('KVM_RUN after close', await running.after(3000))
    await vm.close()
    await mem.close()
  },

  async 'vCPU on MINOR shmem, resolved by UFFDIO_CONTINUE'(o) {
    const u = await opened(o)
    const shm = o.name('shm', await o.backend.mmap({ size: 4n * P, backing: 'shmem' }))
    const alias = o.name('alias', await shm.alias())
    await alias.fill(0, 4n * P, 0x5a)
    const { vm, vcpu } = await vmOver(o.backend, shm)
    await vcpu.loadProgram({ steps: [...readProgram(3n * P + 1n).slice(0, 2), ...writeProgram(2n * P)] })
    await u.register({ start: shm.addr, len: shm.size }, UFFDIO_REGISTER_MODE_MINOR)
    const running = new Running(vcpu.run({ timeoutMs: 10_000 }))
    await awaitEvents(o, 'events', u)
    await o.call('copy page 3 (in the page cache)', u.copy({ dst: shm.addr + 3n * P, data: new Uint8Array(4096) }))
    await o.call('continue page 3', u.continue({ start: shm.addr + 3n * P, len: P }))
    o.note('KVM_RUN after continue', await running.after(3000))
    const writing = new Running(vcpu.run({ timeoutMs: 10_000 }))
    await awaitEvents(o, 'events of the write', u)
    await o.call('unregister (MINOR only)', u.unregister({ start: shm.addr, len: shm.size }))
    o.note('KVM_RUN after unregister', await writing.after())
    await o.call('wake page 2', u.wake({ start: shm.addr + 2n * P, len: P }))
    o.note('KVM_RUN after wake', await writing.after(3000))
    await o.call('alias page 2', alias.read(2n * P, 1))
    await vm.close()
    await Promise.all([u.close(), alias.close(), shm.close()])
  },

  async 'vCPU on MINOR shmem after MADV_DONTNEED of the memslot mapping'(o) {
    const u = await opened(o)
    const shm = o.name('shm', await o.backend.mmap({ size: 2n * P, backing: 'shmem' }))
    await shm.fill(0, 2n * P, 0x33)
    const { vm, vcpu } = await vmOver(o.backend, shm)
    await vcpu.loadProgram({ steps: [...readProgram(0n).slice(0, 2), ...readProgram(0n)] })
    await u.register({ start: shm.addr, len: shm.size }, UFFDIO_REGISTER_MODE_MINOR)
    o.note('KVM_RUN (page mapped)', describeExit(await vcpu.run({ timeoutMs: 10_000 })))
    await o.call('MADV_DONTNEED', shm.madvise(MADV_DONTNEED, 0, 2n * P))
    const running = new Running(vcpu.run({ timeoutMs: 10_000 }))
    await awaitEvents(o, 'events', u)
    await o.call('continue page 0', u.continue({ start: shm.addr, len: P }))
    o.note('KVM_RUN after continue', await running.after(3000))
    await vm.close()
    await Promise.all([u.close(), shm.close()])
  },

  async 'vCPU and a UFFD_USER_MODE_ONLY userfaultfd'(o) {
    const u = await opened(o, UFFD_USER_MODE_ONLY)
    const mem = o.name('anon', await o.backend.mmap({ size: 2n * P, backing: 'anonymous' }))
    const { vm, vcpu } = await vmOver(o.backend, mem)
    await vcpu.loadProgram({ steps: readProgram(8n) })
    await o.call('register MISSING', u.register({ start: mem.addr, len: mem.size }, UFFDIO_REGISTER_MODE_MISSING))
    const running = new Running(vcpu.run({ timeoutMs: 10_000 }))
    o.note('KVM_RUN', await running.after(1000))
    await o.call('events', u.readEvents())
    await o.call('copy page 0', u.copy({ dst: mem.addr, data: new Uint8Array(4096).fill(3) }))
    o.note('KVM_RUN after copy', await running.after(1000))
    await vm.close()
    await Promise.all([u.close(), mem.close()])
  },

  async 'UFFD_FEATURE_EXACT_ADDRESS'(o) {
    const u = await opened(o, 0, UFFD_FEATURE_EXACT_ADDRESS)
    const mem = o.name('anon', await o.backend.mmap({ size: 2n * P, backing: 'anonymous' }))
    const { vm, vcpu } = await vmOver(o.backend, mem)
    await vcpu.loadProgram({ steps: readProgram(P + 0x123n) })
    await u.register({ start: mem.addr, len: mem.size }, UFFDIO_REGISTER_MODE_MISSING)
    const running = new Running(vcpu.run({ timeoutMs: 10_000 }))
    await awaitEvents(o, 'events', u)
    await o.call('copy page 1', u.copy({ dst: mem.addr + P, data: new Uint8Array(4096).fill(9) }))
    o.note('KVM_RUN after copy', await running.after(3000))
    await vm.close()
    await Promise.all([u.close(), mem.close()])
  },

  async 'two vCPUs fault on one page: two events, one COPY wakes both'(o) {
    const u = await opened(o)
    const mem = o.name('anon', await o.backend.mmap({ size: 2n * P, backing: 'anonymous' }))
    const { vm, vcpu } = await vmOver(o.backend, mem)
    const second = await vm.createVcpu(1)
    await vcpu.loadProgram({ steps: readProgram(8n) })
    await second.loadProgram({ steps: readProgram(16n) })
    await u.register({ start: mem.addr, len: mem.size }, UFFDIO_REGISTER_MODE_MISSING)
    const a = new Running(vcpu.run({ timeoutMs: 10_000 }))
    await awaitEvents(o, 'events of vCPU 0', u)
    const b = new Running(second.run({ timeoutMs: 10_000 }))
    await awaitEvents(o, 'events of vCPU 1', u)
    await o.call('copy page 0', u.copy({ dst: mem.addr, data: new Uint8Array(4096).fill(0x21) }))
    o.note('vCPU 0', await a.after(3000))
    o.note('vCPU 1', await b.after(3000))
    await vm.close()
    await Promise.all([u.close(), mem.close()])
  },
}

Object.assign(SCENARIOS, {
  async 'vCPU and a userfaultfd with UFFD_FEATURE_SIGBUS'(o: Outcomes) {
    const u = await opened(o, 0, UFFD_FEATURE_SIGBUS)
    const mem = o.name('anon', await o.backend.mmap({ size: 2n * P, backing: 'anonymous' }))
    const { vm, vcpu } = await vmOver(o.backend, mem)
    await vcpu.loadProgram({ steps: readProgram(8n) })
    await u.register({ start: mem.addr, len: mem.size }, UFFDIO_REGISTER_MODE_MISSING)
    o.note('KVM_RUN', await new Running(vcpu.run({ timeoutMs: 10_000 })).after(1000))
    await o.call('events', u.readEvents())
    await o.call('host read of page 1', mem.read(P + 4n, 4))
    await o.call('host write of page 1', mem.write(P + 4n, new Uint8Array(4)))
    await o.call('events', u.readEvents())
    await vm.close()
    await Promise.all([u.close(), mem.close()])
  },

  async 'a timed-out KVM_RUN blocked on a fault: busy until the fault is resolved'(o: Outcomes) {
    const u = await opened(o)
    const mem = o.name('anon', await o.backend.mmap({ size: 2n * P, backing: 'anonymous' }))
    const { vm, vcpu } = await vmOver(o.backend, mem)
    await vcpu.loadProgram({ steps: readProgram(8n) })
    await u.register({ start: mem.addr, len: mem.size }, UFFDIO_REGISTER_MODE_MISSING)
    const running = new Running(vcpu.run({ timeoutMs: 300 }))
    await awaitEvents(o, 'events', u) // blocked before the deadline, also on a loaded machine
    o.note('KVM_RUN with a 300 ms deadline', await running.after(3000))
    await o.call('KVM_RUN while blocked', vcpu.run({ timeoutMs: 100 }))
    await o.call('KVM_GET_REGS while blocked', vcpu.getRip().then(() => undefined))
    await o.call('copy page 0', u.copy({ dst: mem.addr, data: new Uint8Array(4096).fill(0x31) }))
    let idle = false
    for (let i = 0; i < 200 && !idle; i++) {
      idle = await vcpu.getRip().then(() => true, () => false)
      if (!idle) await sleep(10)
    }
    o.note('vCPU idle after the copy', String(idle))
    o.note('KVM_RUN again', await new Running(vcpu.run({ timeoutMs: 3000 })).after(3000))
    await vm.close()
    await Promise.all([u.close(), mem.close()])
  },
})

/** Runs one scenario on `backend` and returns its lines; a throw is recorded as the last line. */
export async function runScenario(backend: Backend, name: string): Promise<string[]> {
  const o = new Outcomes(backend)
  try {
    await SCENARIOS[name]!(o)
  } catch (e) {
    o.note('scenario threw', e instanceof Error ? `${e.name}: ${e.message}` : String(e))
  }
  return o.lines
}
