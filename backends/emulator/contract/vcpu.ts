// A vCPU fd of the emulator over the VcpuState model (../vcpu.ts).

import type { PreFaultResult, RunOptions, U64In, Vcpu, VcpuExit } from '../../../harness/backend.ts'
import { KvmError, VcpuTimeout } from '../../../harness/errors.ts'
import type { GuestProgram } from '../../../harness/guest-program.ts'
import { errnoNumber } from '../../../harness/uapi/errno.ts'
import { checkGuestProgram } from '../guest-program-check.ts'
import { u64 } from '../u64.ts'
import { VcpuState } from '../vcpu.ts'
import { check } from './errors.ts'
import type { EmulatorVm } from './vm.ts'

/**
 * A vCPU fd. While a run is in flight every other call but kick() is EBUSY, as the native backend
 * refuses calls while the vCPU's thread is busy (the kernel itself would wait on vcpu->mutex).
 */
export class EmulatorVcpu implements Vcpu {
  readonly id: number

  constructor(
    private readonly vm: EmulatorVm,
    private readonly state: VcpuState,
    readonly fd: number,
  ) {
    this.id = state.id
  }

  private idle(op: string): VcpuState {
    if (this.state.isClosed) throw new KvmError('EBADF', op, `vCPU fd ${this.fd} is closed`)
    if (this.state.isRunning) throw new KvmError('EBUSY', op, `vCPU ${this.id} is in KVM_RUN`)
    return this.state
  }

  /** A bad program is a RangeError before anything else; then KVM_SET_SREGS' EBADF/EBUSY; then the boot slot. */
  async loadProgram(program: GuestProgram): Promise<void> {
    const checked = checkGuestProgram(program, this.id)
    if ('refused' in checked) throw new RangeError(checked.refused)
    this.idle('KVM_SET_SREGS')
    await this.vm.bootMemory()
    this.idle('KVM_SET_SREGS').load(checked)
  }

  async run(opts: RunOptions = {}): Promise<VcpuExit> {
    const { timeoutMs, mmioData, ioData } = opts
    if (timeoutMs !== undefined && (typeof timeoutMs !== 'number' || !(timeoutMs >= 0) || !Number.isFinite(timeoutMs))) {
      throw new TypeError(`timeoutMs: ${String(timeoutMs)} is not a non-negative finite number`)
    }
    if (mmioData !== undefined && mmioData.length > 8) throw new RangeError('mmioData must be at most 8 bytes')
    const op = 'KVM_RUN'
    if (this.state.isClosed) throw new KvmError('EBADF', op, `vCPU fd ${this.fd} is closed`)
    check(op, this.state.checkRun(ioData?.length ?? 0) ?? null)
    const deadline = timeoutMs === undefined ? undefined : performance.now() + timeoutMs
    const outcome = await this.state.run(mmioData, deadline)
    if (outcome.kind === 'errno') throw new KvmError(outcome.errno, op)
    if (outcome.kind === 'timeout') throw new VcpuTimeout(op, timeoutMs ?? 0)
    return outcome.exit
  }

  async kick(): Promise<void> {
    if (this.state.isClosed) throw new KvmError('EBADF', 'kick', `vCPU fd ${this.fd} is closed`)
    this.state.kick()
  }

  /**
   * KVM_PRE_FAULT_MEMORY (pre-fault.ts, vcpu.ts): the kernel's answer as a PreFaultResult, the struct as
   * the ioctl leaves it; a closed or busy vCPU rejects (EBADF, EBUSY) as every vCPU call does.
   */
  async preFaultMemory(range: { gpa: U64In; size: U64In; flags?: U64In }): Promise<PreFaultResult> {
    const input = { gpa: u64(range.gpa, 'gpa'), size: u64(range.size, 'size'), flags: u64(range.flags ?? 0, 'flags') }
    const r = await this.idle('KVM_PRE_FAULT_MEMORY').preFault(input)
    if (r.ret === 0) return { ok: true, gpa: r.gpa, size: r.size }
    return { ok: false, error: { code: r.ret, errno: errnoNumber(r.ret) }, gpa: r.gpa, size: r.size }
  }

  /** KVM_GET_REGS' rip: a synthetic address naming the step (guest-program-check.ts, codeBase()). */
  async getRip(): Promise<bigint> {
    return this.idle('KVM_GET_REGS').rip
  }

  /** Without a program there is nothing to ask (null, as native answers without an ioctl). */
  async programStep(): Promise<number | 'halt' | null> {
    if (!this.state.hasProgram) return null
    return this.idle('KVM_GET_REGS').programStep()
  }

  async close(): Promise<void> {
    if (this.state.isClosed) throw new KvmError('EBADF', 'close', `vCPU fd ${this.fd} is closed`)
    this.release()
  }

  /** close(2) of the fd, also when the VM goes: a run in flight returns `intr` at its next yield. */
  release(): void {
    if (this.state.isClosed) return
    this.state.close()
    this.vm.forget(this)
  }
}
