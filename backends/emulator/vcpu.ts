// A vCPU (struct kvm_vcpu): its guest program and registers, the parts of kvm_run it shares with
// userspace, and KVM_RUN as a loop over the interpreter's chunks (guest-program.ts).
//
// The emulator is single-threaded, so a running vCPU yields to the event loop before each chunk of
// guest work (setImmediate): host memslot changes, memory writes, kicks, closes and deadlines land
// there, exactly where a test's other code runs. State and rules only: contract/ turns errnos into KvmError.

import type { VcpuExit } from '../../harness/backend.ts'
import type { ErrnoName } from '../../harness/uapi/errno.ts'
import { codeBase, STEP_BYTES, type CheckedProgram } from './guest-program-check.ts'
import type { GuestMemory } from './guest-memory.ts'
import { GuestCpu, RESET_RIP, execute, runWithoutProgram, type Outcome } from './guest-program.ts'
import { checkPreFault, preFaultStep, type PreFaultRange } from './pre-fault.ts'
import type { KernelProfile } from './profiles.ts'
import type { UffdWait } from './userfaultfd.ts'
import type { VmState } from './vm.ts'

/** x86 KVM_PIO_PAGE_OFFSET * PAGE_SIZE: where kvm_run's io data lives, so what io.data_offset says. */
const KVM_PIO_DATA_OFFSET = 0x1000n

/** x86 KVM_VCPU_ID_RATIO: vCPU ids (APIC ids) may be sparse, up to 4 per possible vCPU. */
export const KVM_VCPU_ID_RATIO = 4

/**
 * x86 KVM_MAX_VCPU_IDS = KVM_MAX_VCPUS * KVM_VCPU_ID_RATIO, which KVM_CAP_MAX_VCPU_ID reports (measured
 * 4096 on the project's 6.18 host, whose KVM_CAP_MAX_VCPUS is 1024).
 */
export function maxVcpuIds(profile: KernelProfile): number {
  return profile.maxVcpus * KVM_VCPU_ID_RATIO
}

/**
 * kvm_vm_ioctl_create_vcpu(): id >= KVM_MAX_VCPU_IDS -> EINVAL; created_vcpus >= max_vcpus (KVM_MAX_VCPUS)
 * -> EINVAL; x86 kvm_arch_vcpu_precreate(): id >= kvm->arch.max_vcpu_ids (the same bound, as this model
 * has no KVM_CAP_MAX_VCPU_ID to lower it) -> EINVAL; then kvm_get_vcpu_by_id() finds the id -> EEXIST.
 * A vCPU lives until its VM does, so its id stays taken after its fd is closed (measured on the 6.18 host:
 * ids 4095 ok, 4096 EINVAL, a second vCPU 0 EEXIST, also after closing the first).
 */
export function checkCreateVcpu(profile: KernelProfile, ids: ReadonlySet<number>, id: number): ErrnoName | undefined {
  if (id >= maxVcpuIds(profile)) return 'EINVAL'
  if (ids.size >= profile.maxVcpus) return 'EINVAL'
  if (ids.has(id)) return 'EEXIST'
  return undefined
}

/**
 * kvm_mmu_load() on the way into the guest: without the TDP MMU (shadow paging, the PVM profile), root
 * allocation goes through make_mmu_pages_available(), which fails with ENOSPC while the VM may have no
 * MMU pages, i.e. before its first memslot and any KVM_SET_NR_MMU_PAGES (why test_zero_memory_regions
 * sets 64; measured ENOSPC on the project's host). The TDP MMU allocates its roots without that check.
 */
export function checkMmuLoad(profile: KernelProfile, vm: VmState): ErrnoName | undefined {
  return !profile.tdp && vm.maxMmuPages === 0n ? 'ENOSPC' : undefined
}

export type RunOutcome =
  | { kind: 'exit'; exit: VcpuExit }
  /** KVM_RUN failed: before entering the guest, or with no exit information (a bare EFAULT). */
  | { kind: 'errno'; errno: ErrnoName }
  /** The deadline passed with the guest still running; it is stopped where it was, as after a kick. */
  | { kind: 'timeout' }

const yieldToHost = () => new Promise<void>((resolve) => setImmediate(resolve))

/** KVM_PRE_FAULT_MEMORY's outcome: the ioctl's return (0 or the errno) and the struct as it is left. */
export interface PreFaultOutcome {
  ret: 0 | ErrnoName
  gpa: bigint
  size: bigint
}

export class VcpuState {
  readonly cpu = new GuestCpu()
  private program: CheckedProgram | null = null
  /** The vCPU ioctl in flight on the vCPU's thread (vcpu->mutex held), if any. */
  private busy: 'KVM_RUN' | 'KVM_PRE_FAULT_MEMORY' | null = null
  private closed = false
  /** A kick or close the ioctl in flight has yet to see (immediate_exit plus a signal). */
  private stop: 'kick' | 'close' | null = null
  /**
   * kvm_run.mmio.data, what an MMIO read gets when KVM_RUN comes without `mmioData`: KVM fills it only
   * for writes (write_exit_mmio()), and it shares its bytes with the other exits' fields (noteExit()).
   */
  private readonly runMmio = new Uint8Array(8)
  /** kvm_run.io.size * io.count of the last KVM_EXIT_IO: the most `ioData` a KVM_RUN can place. */
  private ioRoom = 0

  constructor(
    readonly id: number,
    readonly vm: VmState,
    private readonly memory: GuestMemory,
  ) {
    vm.retain() // create_vcpu_fd() holds a reference to the VM (kvm_get_kvm())
  }

  /** Whether an ioctl is in flight (KVM_RUN or KVM_PRE_FAULT_MEMORY): every other one is EBUSY. */
  get isRunning(): boolean {
    return this.busy !== null
  }

  get isClosed(): boolean {
    return this.closed
  }

  get hasProgram(): boolean {
    return this.program !== null
  }

  /**
   * Places a checked program: KVM_SET_SREGS/KVM_SET_REGS of the native backend, so the registers start
   * over (acc 0, the first step, the zeroed IDT) and an MMIO access in flight is forgotten.
   */
  load(program: CheckedProgram): void {
    this.program = program
    Object.assign(this.cpu, { acc: 0n, pc: 0, sub: 0, idtr: { base: 0n, limit: 0 }, pendingRead: null })
    this.cpu.mmioDone.clear()
  }

  /** KVM_GET_REGS' rip: the reset vector without a program, else the current step's synthetic address. */
  get rip(): bigint {
    if (this.program === null) return RESET_RIP
    return codeBase(this.id) + BigInt(this.cpu.pc) * STEP_BYTES
  }

  /** The step RIP is in, 'halt' in the trailing halt loop, null without a program. */
  programStep(): number | 'halt' | null {
    if (this.program === null) return null
    return this.cpu.pc < this.program.steps.length ? this.cpu.pc : 'halt'
  }

  /**
   * What refuses KVM_RUN before it starts, in the native backend's order: a run already in flight
   * (EBUSY: the vCPU's thread is taken), more `ioData` than the last io exit has room for (EINVAL).
   */
  checkRun(ioDataLength: number): ErrnoName | undefined {
    if (this.busy !== null) return 'EBUSY'
    if (ioDataLength > this.ioRoom) return 'EINVAL'
    return undefined
  }

  /**
   * KVM_RUN: `mmioData` goes into kvm_run.mmio.data, a read that exited is completed from it
   * (complete_userspace_io() runs before anything else), and the guest runs until it exits, a kick or
   * close stops it at the next yield (`intr`), or `deadline` (performance.now()) passes (`timeout`).
   *
   * An access whose host page goes to a userfaultfd puts the vCPU to sleep until the fault is woken,
   * then the access is re-executed (sleepOnUserfault()). A deadline that passes during such a sleep is
   * answered at once (`timeout`); where the sleep cannot be interrupted (profiles.ts guestAccess
   * 'uaccess', as measured) the vCPU stays in KVM_RUN, every other vCPU call EBUSY, until the fault is
   * woken, as the native backend's vCPU thread stays in the kernel after its run was given up.
   */
  run(mmioData: Uint8Array | undefined, deadline: number | undefined): Promise<RunOutcome> {
    this.busy = 'KVM_RUN'
    this.answeredTimeout = false
    let answer!: (o: RunOutcome) => void
    const answered = new Promise<RunOutcome>((resolve) => (answer = resolve))
    const loop = this.runLoop(mmioData, deadline, (o) => answer(o)).finally(() => {
      this.busy = null
      // The native backend clears immediate_exit when KVM_RUN returns: a kick is for one run only.
      if (this.stop === 'kick') this.stop = null
    })
    loop.catch(() => undefined) // a loop that fails after its answer was given has no one to tell
    return Promise.race([loop, answered])
  }

  private async runLoop(mmioData: Uint8Array | undefined, deadline: number | undefined, answer: (o: RunOutcome) => void): Promise<RunOutcome> {
    if (mmioData !== undefined) this.runMmio.set(mmioData)
    this.cpu.completeMmioRead(this.runMmio)
    const refused = checkMmuLoad(this.vm.profile, this.vm)
    if (refused !== undefined) return { kind: 'errno', errno: refused }
    for (let chunks = 0; ; chunks++) {
      // Yield before every chunk, the first included: a host that re-enters after each exit (an MMIO
      // read answered in a loop) would otherwise keep the event loop in microtasks, starving timers.
      await yieldToHost()
      if (this.stop !== null) return { kind: 'exit', exit: { kind: 'intr' } }
      // The guest gets one chunk whatever the deadline, as a native KVM_RUN enters before its timer fires.
      if (chunks > 0 && deadline !== undefined && performance.now() >= deadline) return { kind: 'timeout' }
      const outcome = this.chunk()
      if (outcome.kind === 'exit') {
        this.noteExit(outcome.exit)
        return outcome
      }
      if (outcome.kind === 'errno') return outcome
      if (outcome.kind === 'wait') {
        const ended = await this.sleepOnUserfault(outcome.wait, deadline, answer)
        if (ended !== undefined) return ended
      }
    }
  }

  /** Whether the run in flight already answered its caller with `timeout` (it sleeps on, unseen). */
  private answeredTimeout = false
  /** Wakes the sleep in flight to look at `stop` (kick() and close() call it). */
  private interrupt: (() => void) | null = null

  /**
   * handle_userfault()'s sleep, from the vCPU's side: undefined once the fault is woken (the access is
   * then retried), or how KVM_RUN ends without it. Closing the vCPU ends the sleep (`intr`: the emulator
   * cannot leave a thread in the kernel behind a closed fd). A kick ends it only where the sleep is
   * interruptible (guestAccess 'gup': KVM_EXIT_INTR, the waiter and its unread message gone); otherwise it
   * stays pending and KVM_RUN returns `intr` after the wake. The deadline is a kick from the host: with an
   * interruptible sleep the run ends with `timeout`; otherwise the caller is answered `timeout` now and
   * the sleep goes on.
   */
  private async sleepOnUserfault(wait: UffdWait, deadline: number | undefined, answer: (o: RunOutcome) => void): Promise<RunOutcome | undefined> {
    const interruptible = this.vm.profile.guestAccess === 'gup'
    for (;;) {
      let timer: NodeJS.Timeout | undefined
      const why = await new Promise<'woken' | 'stop' | 'deadline'>((resolve) => {
        void wait.woken.then(() => resolve('woken'))
        this.interrupt = () => resolve('stop')
        // A kick already noted does not end an uninterruptible sleep; a close always does.
        if (this.stop === 'close' || (interruptible && this.stop !== null)) resolve('stop')
        if (deadline !== undefined && !this.answeredTimeout) {
          timer = setTimeout(() => resolve('deadline'), Math.max(0, deadline - performance.now()))
        }
      })
      clearTimeout(timer)
      this.interrupt = null
      if (why === 'woken') return undefined
      if (why === 'stop') {
        if (this.stop === 'close' || interruptible) {
          wait.cancel()
          return { kind: 'exit', exit: { kind: 'intr' } }
        }
        continue // a kick on an uninterruptible sleep: noted in `stop`, seen once the fault is woken
      }
      // The deadline: the host kicks the vCPU.
      this.stop ??= 'kick'
      if (interruptible) {
        wait.cancel()
        return { kind: 'timeout' }
      }
      this.answeredTimeout = true
      answer({ kind: 'timeout' })
    }
  }

  /**
   * KVM_PRE_FAULT_MEMORY (kvm_vcpu_pre_fault_memory()): the argument checks, then one arch step at a time
   * (each maps up to a huge page, pre-fault.ts) until the range is done or a step fails. The host gets in
   * before every step (cond_resched()), so a kick lands as a pending signal: EINTR at the next step. The
   * ioctl returns 0 once any page was processed, with what is left in `gpa`/`size`; the error only when
   * nothing was.
   */
  async preFault(range: PreFaultRange): Promise<PreFaultOutcome> {
    this.busy = 'KVM_PRE_FAULT_MEMORY'
    try {
      const refused = checkPreFault(range)
      if (refused !== undefined) return { ret: refused, gpa: range.gpa, size: range.size }
      let { gpa, size } = range
      let ret: 0 | ErrnoName = 0
      do {
        await yieldToHost()
        // signal_pending(current) -> EINTR
        if (this.stop !== null) {
          ret = 'EINTR'
          break
        }
        // x86 kvm_arch_vcpu_pre_fault_memory(): kvm_mmu_reload() first, then the mapping.
        const step = checkMmuLoad(this.vm.profile, this.vm) ?? preFaultStep(this.vm, this.vm.host, gpa, size)
        if (typeof step === 'string') {
          ret = step
          break
        }
        if (typeof step === 'object') {
          // get_user_pages() with FOLL_INTERRUPTIBLE sleeps on the userfaultfd; a kick or close ends the
          // sleep (KVM_PFN_ERR_SIGPENDING -> EINTR at the loop's signal check), a wake faults again.
          await this.sleepInterruptibly(step.wait)
          continue
        }
        gpa += step
        size -= step
      } while (size > 0n)
      // "Return success if at least one page was mapped successfully."
      return { ret: size === range.size ? ret : 0, gpa, size }
    } finally {
      this.busy = null
      if (this.stop === 'kick') this.stop = null
    }
  }

  /** A sleep on a userfaultfd that a kick or close ends (the waiter leaves the queue); `stop` tells which. */
  private async sleepInterruptibly(wait: UffdWait): Promise<void> {
    const woken = await new Promise<boolean>((resolve) => {
      void wait.woken.then(() => resolve(true))
      this.interrupt = () => resolve(false)
      if (this.stop !== null) resolve(false)
    })
    this.interrupt = null
    if (!woken) wait.cancel()
  }

  private chunk(): Outcome {
    if (this.program === null) return runWithoutProgram(this.memory)
    return execute(this.cpu, this.program, { vcpuId: this.id, memory: this.memory, runMmio: this.runMmio })
  }

  /**
   * What an exit leaves in kvm_run. The exit union overlays mmio.data (union bytes 8..15) on io.data_offset,
   * internal.data[0] and memory_fault.gpa, so those exits overwrite it; hlt, shutdown and intr leave the
   * union alone (measured on the 6.18 host: after a signal, a read completed without data gets 0x1000).
   */
  private noteExit(exit: VcpuExit): void {
    const union = new DataView(this.runMmio.buffer)
    switch (exit.kind) {
      case 'io':
        this.ioRoom = exit.size * exit.count
        union.setBigUint64(0, KVM_PIO_DATA_OFFSET, true)
        break
      case 'mmio':
        if (exit.isWrite) this.runMmio.set(exit.data)
        break
      case 'internal_error':
        union.setBigUint64(0, exit.data[0] ?? 0n, true)
        break
      case 'memory_fault':
        union.setBigUint64(0, exit.gpa, true)
        break
    }
  }

  /**
   * kick(): stops a run in flight at its next yield, or a KVM_PRE_FAULT_MEMORY in flight at its next step
   * (EINTR); with neither in flight it does nothing, as native's.
   */
  kick(): void {
    if (this.busy !== null) this.stop ??= 'kick'
    this.interrupt?.()
  }

  /** close(2) of the vCPU fd: a run in flight ends with `intr`; the VM reference goes. */
  close(): void {
    if (this.closed) return
    this.closed = true
    if (this.busy !== null) this.stop = 'close'
    this.interrupt?.()
    this.vm.release()
  }
}
