// Vcpu over the addon: KVM_RUN on the vCPU's own native thread, exits decoded from kvm_run.
//
// run({ timeoutMs }) arms a timer on the event loop; when it fires the vCPU is kicked
// (immediate_exit plus a signal to its thread) and the run rejects with VcpuTimeout once KVM_RUN comes
// back with EINTR. If the kernel does not let go within a second after the kick (a vCPU waiting on a
// fault that ignores signals), the run rejects with VcpuTimeout anyway and the vCPU stays busy (EBUSY).

import type { HostMapping, PreFaultResult, RunOptions, U64In, Vcpu, VcpuExit } from '../../harness/backend.ts'
import { VcpuTimeout } from '../../harness/errors.ts'
import type { GuestProgram } from '../../harness/guest-program.ts'
import { errnoName } from '../../harness/uapi/errno.ts'
import { type Handle, native, nativeAsync, type RawExit } from './addon.ts'
import type { NativeContext } from './context.ts'
import { u64 } from './u64.ts'
import { compileGuestProgram, stepAt, type GuestLabels } from './guest-code/index.ts'

/** After a timeout's kick, how long KVM_RUN gets to return before the run is given up. */
const KICK_GRACE_MS = 1000

/** Byte offset of rip in struct kvm_regs (x86-64: 16 general registers, then rip, rflags). */
const KVM_REGS_RIP = 128

/** Boot memslots that already hold the shared page tables, GDT, TSS and IDT. */
const bootTablesWritten = new WeakSet<HostMapping>()

export class NativeVcpu implements Vcpu {
  readonly fd: number
  /** Where the loaded program's steps start, for programStep(). */
  private labels: GuestLabels | undefined

  constructor(private readonly ctx: NativeContext, readonly handle: Handle, readonly id: number,
    private readonly onClose: (v: NativeVcpu) => void,
    private readonly bootMemory: () => Promise<HostMapping>) {
    this.fd = native(() => ctx.addon.vcpuFd(handle))
    ctx.track(this)
  }

  /**
   * Compiles the program to x86-64 (guest-code/), writes the shared page tables (once per VM) and this
   * vCPU's code area into the VM's boot memslot, then KVM_SET_SREGS and KVM_SET_REGS. Only this vCPU's
   * area is rewritten, so the VM's other vCPUs keep their programs.
   */
  async loadProgram(program: GuestProgram): Promise<void> {
    const compiled = compileGuestProgram(program, { vcpuId: this.id })
    const boot = await this.bootMemory()
    const [shared, area] = compiled.writes
    // The shared part is the same for every program, so it is written once per boot memslot: each
    // write is a trip through the addon's worker pool, and the fuzzer loads a program per access.
    // (Guest programs never write below their vCPU areas: that is where their page tables live.)
    if (!bootTablesWritten.has(boot)) {
      await boot.write(shared.gpa, shared.bytes)
      bootTablesWritten.add(boot)
    }
    await boot.write(area.gpa, area.bytes)
    await this.loadRaw({ sregs: compiled.sregs, regs: compiled.regs })
    this.labels = compiled.labels
  }

  /** The step of the loaded program that RIP is in. */
  async programStep(): Promise<number | 'halt' | null> {
    if (this.labels === undefined) return null
    return stepAt(this.labels, await this.getRip()) ?? null
  }

  /**
   * Internal (not in the contract): KVM_SET_SREGS then KVM_SET_REGS from raw struct bytes
   * (struct kvm_sregs, 312 bytes; struct kvm_regs, 144 bytes), as the guest-code compiler produces them.
   */
  async loadRaw(state: { regs?: Uint8Array; sregs?: Uint8Array }): Promise<void> {
    if (state.sregs !== undefined) native(() => this.ctx.addon.vcpuSetSregs(this.handle, state.sregs!))
    if (state.regs !== undefined) native(() => this.ctx.addon.vcpuSetRegs(this.handle, state.regs!))
  }

  /** Internal: KVM_GET_REGS as raw struct kvm_regs bytes. */
  async getRegsRaw(): Promise<Uint8Array> {
    return native(() => this.ctx.addon.vcpuGetRegs(this.handle))
  }

  /** Internal: KVM_GET_SREGS as raw struct kvm_sregs bytes. */
  async getSregsRaw(): Promise<Uint8Array> {
    return native(() => this.ctx.addon.vcpuGetSregs(this.handle))
  }

  /** KVM_RUN */
  async run(opts: RunOptions = {}): Promise<VcpuExit> {
    const { timeoutMs } = opts
    if (timeoutMs !== undefined && (typeof timeoutMs !== 'number' || !(timeoutMs >= 0) || !Number.isFinite(timeoutMs))) {
      throw new TypeError(`timeoutMs: ${String(timeoutMs)} is not a non-negative finite number`)
    }
    const running = nativeAsync(() => this.ctx.addon.vcpuRun(this.handle, opts.mmioData, opts.ioData))
    if (timeoutMs === undefined) return shapeExit(await running)

    let timedOut = false
    const timers: NodeJS.Timeout[] = []
    const givenUp = new Promise<never>((_, reject) => {
      timers.push(setTimeout(() => {
        timedOut = true
        try {
          this.ctx.addon.vcpuKick(this.handle)
        } catch {
          // closed meanwhile: the run settles on its own
        }
        timers.push(setTimeout(() => reject(new VcpuTimeout('KVM_RUN', timeoutMs)), KICK_GRACE_MS))
      }, timeoutMs))
    })
    givenUp.catch(() => {})
    running.catch(() => {})
    try {
      const raw = await Promise.race([running, givenUp])
      if (timedOut && raw.kind === 'intr') throw new VcpuTimeout('KVM_RUN', timeoutMs)
      return shapeExit(raw)
    } finally {
      for (const t of timers) clearTimeout(t)
    }
  }

  /** immediate_exit = 1 plus SIGUSR1 to the vCPU thread; a no-op when no run is in flight. */
  async kick(): Promise<void> {
    native(() => this.ctx.addon.vcpuKick(this.handle))
  }

  /** KVM_PRE_FAULT_MEMORY, issued on the vCPU thread (it takes vcpu->mutex and may fault pages in). */
  async preFaultMemory(range: { gpa: U64In; size: U64In; flags?: U64In }): Promise<PreFaultResult> {
    const gpa = u64(range.gpa, 'gpa')
    const size = u64(range.size, 'size')
    const flags = u64(range.flags ?? 0, 'flags')
    const r = await nativeAsync(() => this.ctx.addon.vcpuPreFaultMemory(this.handle, gpa, size, flags))
    if (r.ret === 0) return { ok: true, gpa: r.gpa, size: r.size }
    return { ok: false, error: { code: errnoName(r.errno), errno: r.errno }, gpa: r.gpa, size: r.size }
  }

  /** KVM_GET_REGS, rip. */
  async getRip(): Promise<bigint> {
    const regs = native(() => this.ctx.addon.vcpuGetRegs(this.handle))
    return new DataView(regs.buffer, regs.byteOffset, regs.byteLength).getBigUint64(KVM_REGS_RIP, true)
  }

  async close(): Promise<void> {
    native(() => this.ctx.addon.vcpuClose(this.handle))
    this.ctx.untrack(this)
    this.onClose(this)
  }
}

/** The addon's raw exit as harness/backend.ts's VcpuExit. */
export function shapeExit(raw: RawExit): VcpuExit {
  switch (raw.kind) {
    case 'io':
      return { kind: 'io', port: raw.port, size: raw.size, direction: raw.direction, count: raw.count, data: raw.data }
    case 'mmio':
      return { kind: 'mmio', physAddr: raw.physAddr, len: raw.len, isWrite: raw.isWrite, data: raw.data }
    case 'hlt':
    case 'shutdown':
    case 'intr':
      return { kind: raw.kind }
    case 'internal_error':
      return { kind: 'internal_error', suberror: raw.suberror, data: raw.data }
    case 'memory_fault':
      return {
        kind: 'memory_fault', errno: raw.errno === 133 ? 'EHWPOISON' : 'EFAULT',
        flags: raw.flags, gpa: raw.gpa, size: raw.size,
      }
    case 'fail_entry':
      return { kind: 'fail_entry', reason: raw.reason }
    case 'other':
      return { kind: 'other', exitReason: raw.exitReason }
  }
}
