// The interpreter of guest programs (harness/guest-program.ts): one vCPU's registers, and its steps run
// against guest memory in chunks, so that the run loop (vcpu.ts) can let the host in between chunks.
//
// Every access is re-done when its step is re-entered, as KVM re-executes an instruction after userspace
// completes its MMIO (complete_emulated_mmio()): the fragments userspace already completed are kept in
// `mmioDone` and consumed by the re-executed access, so a read gets the data of the next KVM_RUN.

import type { VcpuExit } from '../../harness/backend.ts'
import { accessException, deliverException, emulationFailureExit, type GateRead, type Idtr } from './exceptions.ts'
import { codeBase, STEP_BYTES, type CheckedProgram, type Step } from './guest-program-check.ts'
import { pageRemainder, type GuestMemory, type MemoryExit } from './guest-memory.ts'
import { PAGE_SIZE } from './page-store.ts'
import type { UffdWait } from './userfaultfd.ts'

/**
 * The work a chunk may do before the run loop yields: one unit per step, per spin iteration and per
 * page (or MMIO byte) of touch_pages, fill and check. About a millisecond of work.
 */
export const CHUNK_UNITS = 512

/**
 * The pages an instruction fetch walks before the code page: PML4, PDPT and the first PD, where the
 * native boot image keeps them (backends/native/guest-code/boot-image.ts). Deleting the boot slot
 * takes them away with the code.
 */
const WALKED_PAGES = [0x1000n, 0x2000n, 0x3000n]

/** The reset vector: CS base 0xffff0000 + RIP 0xfff0, where a vCPU without a program starts. */
export const RESET_RIP = 0xfff0n
const RESET_FETCH_GPA = 0xffff_fff0n

/** One vCPU's architectural state, as far as guest programs reach it. */
export class GuestCpu {
  /** The accumulator (rbx in the native backend's code). */
  acc = 0n
  /** The step being run; steps.length is the trailing halt loop. */
  pc = 0
  /** Progress inside the step: pages done (touch_pages) or bytes done (fill, check). */
  sub = 0
  /**
   * IDTR: base 0, limit 0 until a lidt step, so any exception ends in a triple fault. (The native boot
   * image loads 256 zeroed gates instead; with no present gate the outcome is the same.)
   */
  idtr: Idtr = { base: 0n, limit: 0 }
  /** Fragments of the access in progress that userspace has completed, by GPA (vcpu->mmio_fragments). */
  readonly mmioDone = new Map<bigint, Uint8Array>()
  /** The MMIO read the last KVM_RUN exited for, completed by the next one. */
  pendingRead: { gpa: bigint; len: number } | null = null

  /** complete_emulated_mmio(): KVM_RUN hands kvm_run.mmio.data to the read that exited. */
  completeMmioRead(runMmio: Uint8Array): void {
    if (this.pendingRead === null) return
    this.mmioDone.set(this.pendingRead.gpa, runMmio.slice(0, this.pendingRead.len))
    this.pendingRead = null
  }
}

export interface ExecContext {
  readonly vcpuId: number
  readonly memory: GuestMemory
  /** kvm_run.mmio.data as the last exits left it (vcpu.ts); a read's exit shows it, unchanged. */
  readonly runMmio: Uint8Array
}

export type Outcome =
  | { kind: 'exit'; exit: VcpuExit }
  /** The chunk's work is done (or a fault must be retried): the run loop yields and goes on. */
  | { kind: 'yield' }
  /** KVM_RUN fails with EFAULT and no exit (KVM Userfault's bitmap could not be read). */
  | { kind: 'errno'; errno: 'EFAULT' }
  /** The access's host page went to a userfaultfd: the vCPU sleeps on `wait`, then re-executes the access. */
  | { kind: 'wait'; wait: UffdWait }

/** A data access: done, or stopped by an exit (`retired` when the access completed as it exited). */
type Access = { kind: 'done'; bytes: Uint8Array } | { kind: 'stop'; outcome: Outcome; retired: boolean }

const YIELD: Outcome = { kind: 'yield' }
const exit = (e: VcpuExit): Outcome => ({ kind: 'exit', exit: e })

/** The low `width` bytes of `value`, little-endian. */
function toLe(value: bigint, width: number): Uint8Array {
  const bytes = new Uint8Array(width)
  for (let i = 0; i < width; i++) bytes[i] = Number((value >> BigInt(8 * i)) & 0xffn)
  return bytes
}

function fromLe(bytes: Uint8Array): bigint {
  let value = 0n
  for (let i = bytes.length - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[i]!)
  return value
}

/** KVM_EXIT_MEMORY_FAULT for one page: KVM_RUN returned -1 with EFAULT. */
function memoryFaultExit(f: Extract<MemoryExit, { kind: 'memory_fault' }>): VcpuExit {
  return { kind: 'memory_fault', errno: 'EFAULT', flags: f.flags, gpa: f.gpa, size: BigInt(PAGE_SIZE) }
}

/** How an access that is neither RAM nor MMIO stops KVM_RUN: an exit, a bare EFAULT, or a retry later. */
function stopFor(r: Exclude<MemoryExit, { kind: 'mmio' }>): Outcome {
  switch (r.kind) {
    case 'memory_fault':
      return exit(memoryFaultExit(r))
    case 'efault':
      return { kind: 'errno', errno: 'EFAULT' }
    case 'retry':
      return r.wait === undefined ? YIELD : { kind: 'wait', wait: r.wait }
  }
}

/**
 * A vCPU that never loaded a program starts at the reset vector, which no guest program occupies: the
 * fetch exits as KVM would for an address without a memslot (test_zero_memory_regions), and the
 * emulator reports the same emulation failure when something is mapped there, as it runs no x86 code.
 */
export function runWithoutProgram(memory: GuestMemory): Outcome {
  const r = memory.fetchable(RESET_FETCH_GPA)
  return r === undefined || r.kind === 'mmio' ? exit(emulationFailureExit()) : stopFor(r)
}

/** Runs `program` on `cpu` until it exits to the host or has done CHUNK_UNITS of work. */
export function execute(cpu: GuestCpu, program: CheckedProgram, ctx: ExecContext): Outcome {
  return new Chunk(cpu, program, ctx).run()
}

class Chunk {
  private units = CHUNK_UNITS

  constructor(
    private readonly cpu: GuestCpu,
    private readonly program: CheckedProgram,
    private readonly ctx: ExecContext,
  ) {}

  run(): Outcome {
    for (;;) {
      if (!this.spend()) return YIELD
      const fetchFailed = this.fetch()
      if (fetchFailed !== undefined) return fetchFailed
      const step = this.program.steps[this.cpu.pc]
      // After the last step: the trailing hlt loop, halting again on every KVM_RUN.
      if (step === undefined) return exit({ kind: 'hlt' })
      const r = this.step(step)
      if (r !== undefined) return r
    }
  }

  private spend(): boolean {
    return this.units-- > 0
  }

  private next(): undefined {
    this.cpu.pc++
    this.cpu.sub = 0
    return undefined
  }

  /**
   * The instruction fetch at the step's synthetic RIP: its page walk and code page must be guest RAM.
   * From MMIO KVM cannot fetch, and its emulator gives up: KVM_INTERNAL_ERROR_EMULATION.
   */
  private fetch(): Outcome | undefined {
    const rip = codeBase(this.ctx.vcpuId) + BigInt(this.cpu.pc) * STEP_BYTES
    let r: MemoryExit | undefined
    for (const gpa of WALKED_PAGES) r ??= this.ctx.memory.fetchable(gpa)
    r ??= this.ctx.memory.fetchable(rip)
    if (r === undefined) return undefined
    return r.kind === 'mmio' ? exit(emulationFailureExit()) : stopFor(r)
  }

  private step(s: Step): Outcome | undefined {
    const cpu = this.cpu
    switch (s.op) {
      case 'write': {
        const vector = accessException(s.gva, s.width)
        if (vector !== undefined) return this.raise(vector)
        const a = this.access(s.gva, s.width, toLe(s.value ?? cpu.acc, s.width))
        if (a.kind === 'stop') {
          if (a.retired) this.next()
          return a.outcome
        }
        return this.next()
      }
      case 'read': {
        const vector = accessException(s.gva, s.width)
        if (vector !== undefined) return this.raise(vector)
        const a = this.access(s.gva, s.width, null)
        if (a.kind === 'stop') return a.outcome
        cpu.acc = fromLe(a.bytes)
        return this.next()
      }
      case 'spin_while_eq':
        return this.spin(s.gva, s.value)
      case 'signal': {
        const value = s.value === null ? cpu.acc & 0xffff_ffffn : BigInt(s.value)
        this.next() // out has completed when KVM exits; re-entering runs the next step
        return exit({ kind: 'io', port: s.port, size: 4, direction: 'out', count: 1, data: toLe(value, 4) })
      }
      case 'touch_pages':
        return this.touchPages(s)
      case 'fill':
        return this.fill(s)
      case 'check':
        return this.check(s)
      case 'lidt':
        cpu.idtr = { base: s.base, limit: s.limit }
        return this.next()
      case 'jump':
        cpu.pc = s.to
        cpu.sub = 0
        return undefined
      case 'hlt':
        this.next() // KVM_EXIT_HLT leaves RIP after the hlt
        return exit({ kind: 'hlt' })
    }
  }

  /** An exception raised by the current step: RIP stays on it, so re-entering raises it again. */
  private raise(vector: number): Outcome {
    const delivered = deliverException(vector, this.cpu.idtr, (gpa) => this.readGate(gpa))
    return 'stop' in delivered ? delivered.stop : exit(delivered)
  }

  /** The 16 bytes of an IDT gate, read as the CPU does while vectoring (never through userspace MMIO). */
  private readGate(gpa: bigint): GateRead<Outcome> {
    const gate = new Uint8Array(16)
    for (let at = 0; at < 16; ) {
      const frag = gpa + BigInt(at)
      const n = Math.min(16 - at, pageRemainder(frag))
      const r = this.ctx.memory.read(frag, n)
      if (!(r instanceof Uint8Array)) return r.kind === 'mmio' ? { mmio: frag } : { stop: stopFor(r) }
      gate.set(r, at)
      at += n
    }
    return gate
  }

  /** kvm_util's guest_spin_on_val(): every iteration fetches and reads again, so host changes show. */
  private spin(gva: bigint, value: bigint): Outcome | undefined {
    for (;;) {
      if (!this.spend()) return YIELD
      const fetchFailed = this.fetch()
      if (fetchFailed !== undefined) return fetchFailed
      const a = this.access(gva, 8, null)
      if (a.kind === 'stop') return a.outcome
      this.cpu.acc = fromLe(a.bytes)
      if (this.cpu.acc !== value) return this.next()
    }
  }

  private touchPages(s: Extract<Step, { op: 'touch_pages' }>): Outcome | undefined {
    const data = s.write ? toLe(s.value, 8) : null
    while (this.cpu.sub < s.pages) {
      if (!this.spend()) return YIELD
      const a = this.access(s.gva + BigInt(this.cpu.sub) * s.stride, 8, data)
      if (a.kind === 'stop') {
        if (a.retired) this.cpu.sub++ // RIP stays in the loop: the step ends on re-entry (as on the 6.18 host)
        return a.outcome
      }
      if (data === null) this.cpu.acc = fromLe(a.bytes)
      this.cpu.sub++
    }
    return this.next()
  }

  /**
   * rep stosb: a page of guest RAM at a time; on MMIO or a READONLY slot each byte's store reaches the
   * host as its own KVM_EXIT_MMIO, as KVM's emulator runs the string instruction one element per exit.
   */
  private fill(s: Extract<Step, { op: 'fill' }>): Outcome | undefined {
    const cpu = this.cpu
    while (cpu.sub < s.length) {
      if (!this.spend()) return YIELD
      const gpa = s.gva + BigInt(cpu.sub)
      if (cpu.mmioDone.size === 0) {
        const n = Math.min(s.length - cpu.sub, pageRemainder(gpa))
        const r = this.ctx.memory.fill(gpa, n, s.byte)
        if (r === undefined) {
          cpu.sub += n
          continue
        }
        if (r.kind !== 'mmio') return stopFor(r)
      }
      const a = this.access(gpa, 1, Uint8Array.of(s.byte))
      if (a.kind === 'stop') {
        if (a.retired) cpu.sub++ // rep stosb's RIP stays on it until re-entry ends it (as on the 6.18 host)
        return a.outcome
      }
      cpu.sub++
    }
    return this.next()
  }

  /** A byte-compare loop: a page of RAM at a time, one 1-byte MMIO read per byte elsewhere. */
  private check(s: Extract<Step, { op: 'check' }>): Outcome | undefined {
    const cpu = this.cpu
    if (cpu.sub === 0) cpu.acc = 0n
    while (cpu.sub < s.length) {
      if (!this.spend()) return YIELD
      const gpa = s.gva + BigInt(cpu.sub)
      if (cpu.mmioDone.size === 0) {
        const n = Math.min(s.length - cpu.sub, pageRemainder(gpa))
        const r = this.ctx.memory.mismatches(gpa, n, s.byte)
        if (typeof r === 'number') {
          cpu.acc += BigInt(r)
          cpu.sub += n
          continue
        }
        if (r.kind !== 'mmio') return stopFor(r)
      }
      const a = this.access(gpa, 1, null)
      if (a.kind === 'stop') return a.outcome
      if (a.bytes[0] !== s.byte) cpu.acc++
      cpu.sub++
    }
    return this.next()
  }

  /**
   * One data access of up to 8 bytes (`data` for a write, null for a read), split into fragments at
   * page boundaries as emulator_read_write() splits it. Each fragment is RAM, or exits: a memory fault
   * (re-executed on the next KVM_RUN), or MMIO. An MMIO write is complete once userspace has seen it
   * (write_exit_mmio() copies it into kvm_run), so when it is the last fragment the access is `retired`:
   * a `write` step's RIP moves on, as x86_emulate_instruction() writes RIP back for MMIO writes but not
   * for reads, while a loop (fill, touch_pages) counts the element and ends on re-entry.
   */
  private access(gpa: bigint, length: number, data: Uint8Array | null): Access {
    const done = this.cpu.mmioDone
    const bytes = new Uint8Array(length)
    for (let at = 0; at < length; ) {
      const frag = gpa + BigInt(at)
      const n = Math.min(length - at, pageRemainder(frag))
      const piece = data?.slice(at, at + n) ?? null
      const r = done.get(frag) ?? (piece === null ? this.ctx.memory.read(frag, n) : this.ctx.memory.write(frag, piece))
      if (r !== undefined && !(r instanceof Uint8Array)) {
        if (r.kind !== 'mmio') return { kind: 'stop', outcome: stopFor(r), retired: false }
        return this.mmioExit(frag, n, piece, at + n === length)
      }
      if (r instanceof Uint8Array && piece === null) bytes.set(r, at)
      at += n
    }
    done.clear()
    return { kind: 'done', bytes }
  }

  private mmioExit(gpa: bigint, len: number, written: Uint8Array | null, last: boolean): Access {
    if (written !== null) {
      if (last) this.cpu.mmioDone.clear()
      else this.cpu.mmioDone.set(gpa, written)
      return { kind: 'stop', outcome: exit({ kind: 'mmio', physAddr: gpa, len, isWrite: true, data: written }), retired: last }
    }
    this.cpu.pendingRead = { gpa, len }
    const data = this.ctx.runMmio.slice(0, len)
    return { kind: 'stop', outcome: exit({ kind: 'mmio', physAddr: gpa, len, isWrite: false, data }), retired: false }
  }
}
