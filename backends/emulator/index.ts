// The reference emulator as a Backend (harness/backend.ts): the only file that implements the contract
// and the only one that throws KvmError and HostFault. Everything below converts arguments at the edge,
// asks the rule files, and turns their errno names into errors named after the ioctl or syscall.

import { hostname } from 'node:os'
import type {
  Backend,
  BackendInfo,
  BackendLoad,
  Backing,
  GuestMemfd,
  GuestMemfdStat,
  HostMapping,
  MemoryAttributes,
  PreFaultResult,
  RunOptions,
  U64In,
  Uffd,
  UffdEvent,
  UserfaultBitmap,
  UserspaceMemoryRegion,
  UserspaceMemoryRegion2,
  Vcpu,
  VcpuExit,
  Vm,
} from '../../harness/backend.ts'
import type { DemandPagingConfig, DemandPagingResult } from '../../harness/demand-paging-types.ts'
import { HostFault, KvmError, VcpuTimeout } from '../../harness/errors.ts'
import { BOOT_SLOT, BOOT_SLOT_GPA, BOOT_SLOT_SIZE, type GuestProgram } from '../../harness/guest-program.ts'
import { KVM_API_VERSION } from '../../harness/uapi/kvm.ts'
import { UFFD_API } from '../../harness/uapi/userfaultfd.ts'
import { errnoNumber, type ErrnoName } from '../../harness/uapi/errno.ts'
import {
  AVAILABLE_BACKINGS,
  AddressSpace,
  UNAVAILABLE_BACKINGS,
  anonymousObject,
  isFault,
  shmemObject,
  type Fault,
  type MemoryObject,
  type Vma,
} from './address-space.ts'
import { checkExtension } from './caps.ts'
import { runEmulatorDemandPaging } from './demand-paging.ts'
import { FdTable, type OpenFile } from './fd-table.ts'
import { checkFallocate, checkMmap, punchHole, readWriteErrno, type GuestMemfdFile } from './guest-memfd.ts'
import { GuestMemory } from './guest-memory.ts'
import { checkGuestProgram } from './guest-program-check.ts'
import { bytesBefore, faultedIn, userfaultStop, type UserfaultStop } from './host-access.ts'
import { byteValue, legacyRegion, memoryAttributes, region2, u64Words } from './inputs.ts'
import { madvise } from './madvise.ts'
import type { MemoryRegion, MemslotIoctl } from './memslots.ts'
import { PAGE_SIZE, isPageAligned, pageAlignUp } from './page-store.ts'
import { DEFAULT_PROFILE, getProfile, type KernelProfile } from './profiles.ts'
import type { Stage2View } from './stage2.ts'
import { count, int32, integer, loff, u32, u64 } from './u64.ts'
import { bitLocation, bitmapBytes, bitmapWords, filledBitmap } from './userfault-bitmap.ts'
import { VcpuState } from './vcpu.ts'
import { register, unregister, validateRange } from './uffd-registrations.ts'
import { checkMfill, dontWake, mfill, type MfillOp } from './uffd-mfill.ts'
import { Userfaultfd, checkUserfaultfdFlags } from './userfaultfd.ts'
import { VmState, checkCreateVm } from './vm.ts'

export { DEFAULT_PROFILE, defineProfile, getProfile, profileNames, type KernelProfile } from './profiles.ts'

export interface EmulatorOptions {
  /** A profile name from profiles.ts, or a variant built with defineProfile(); DEFAULT_PROFILE when omitted. */
  profile?: string | KernelProfile | undefined
}

/** Rejects with `code` from `op`, or hands back the rule's result. */
function check<T>(op: string, result: T | ErrnoName, detail?: string): Exclude<T, ErrnoName> {
  if (typeof result === 'string') throw new KvmError(result as ErrnoName, op, detail)
  return result as Exclude<T, ErrnoName>
}

function hostAccess<T>(op: string, result: T | Fault): T {
  if (isFault(result)) throw new HostFault(result.fault, op, result.address)
  return result
}

class EmulatorBackend implements Backend {
  readonly name = 'emulator'
  readonly systemFd: number
  readonly fds = new FdTable<OpenFile>({ kind: 'stdio' })
  readonly memory = new AddressSpace()
  readonly vms = new Set<EmulatorVm>()
  readonly gmems = new Set<EmulatorGuestMemfd>()
  readonly mappings = new Set<EmulatorMapping>()
  readonly uffds = new Set<EmulatorUffd>()
  private nextIno = 0x1000n
  private closed = false

  constructor(readonly profile: KernelProfile) {
    this.systemFd = check('open', this.fds.install({ kind: 'kvm' }))
  }

  ino(): bigint {
    return this.nextIno++
  }

  /** The fd number of a userfaultfd context, for messages. */
  uffdFd(ctx: Userfaultfd): number | string {
    for (const u of this.uffds) if (u.ctx === ctx) return u.fd
    return '(closed)'
  }

  /** The /dev/kvm fd: EBADF once the backend is closed. */
  private system(op: string): void {
    if (this.closed) throw new KvmError('EBADF', op, 'the backend is closed')
  }

  async info(): Promise<BackendInfo> {
    return {
      kernelRelease: `emulator (${this.profile.name})`,
      arch: this.profile.arch,
      pageSize: PAGE_SIZE,
      profile: this.profile.name,
      backings: [...AVAILABLE_BACKINGS],
      features: ['vcpu', 'userfaultfd', 'demand-paging'],
      host: hostname(),
    }
  }

  async getApiVersion(): Promise<number> {
    this.system('KVM_GET_API_VERSION')
    return KVM_API_VERSION
  }

  async checkExtension(cap: number): Promise<number> {
    this.system('KVM_CHECK_EXTENSION')
    return checkExtension(this.profile, null, integer(cap, 'cap'))
  }

  async createVm(opts: { type?: number } = {}): Promise<Vm> {
    this.system('KVM_CREATE_VM')
    const type = count(opts.type ?? 0, 'type')
    check('KVM_CREATE_VM', checkCreateVm(this.profile, type) ?? null)
    const state = new VmState(this.profile, type, this.memory)
    const fd = check('KVM_CREATE_VM', this.fds.install({ kind: 'vm', vm: state }))
    const vm = new EmulatorVm(this, state, fd)
    this.vms.add(vm)
    return vm
  }

  async mmap(opts: { size: U64In; backing: Backing }): Promise<HostMapping> {
    this.system('mmap')
    const size = u64(opts.size, 'size')
    if (UNAVAILABLE_BACKINGS.includes(opts.backing)) {
      throw new KvmError('ENOSYS', 'mmap', `${opts.backing} is not among info().backings`)
    }
    if (!AVAILABLE_BACKINGS.includes(opts.backing)) throw new TypeError(`backing: unknown '${String(opts.backing)}'`)
    if (size === 0n) throw new KvmError('EINVAL', 'mmap', 'length 0')
    if (opts.backing !== 'shmem') {
      return this.map(anonymousObject(opts.backing === 'anonymous_thp'), size, 0n, opts.backing, null, null)
    }
    // memfd_create() + ftruncate(size) + mmap(MAP_SHARED): the mapping carries the memfd.
    const object = shmemObject(size)
    const fd = check('memfd_create', this.fds.install({ kind: 'memfd', object }))
    return this.map(object, size, 0n, 'shmem', fd, { closeFd: true })
  }

  map(
    object: MemoryObject,
    size: bigint,
    offset: bigint,
    backing: HostMapping['backing'],
    fd: number | null,
    owns: { closeFd?: boolean; file?: GuestMemfdFile } | null,
  ): EmulatorMapping {
    const vma = check('mmap', this.memory.map(object, size, offset))
    const mapping = new EmulatorMapping(this, vma, backing, fd, owns ?? {})
    this.mappings.add(mapping)
    return mapping
  }

  async createUserfaultBitmap(npages: number): Promise<UserfaultBitmap> {
    this.system('mmap')
    const pages = count(npages, 'npages')
    if (pages === 0) throw new KvmError('EINVAL', 'mmap', 'a bitmap of 0 pages has no words')
    const mapping = this.map(anonymousObject(), BigInt(bitmapBytes(pages)), 0n, 'anonymous', null, null)
    return new EmulatorUserfaultBitmap(mapping, pages)
  }

  /**
   * demand_paging_test simulated inside the emulator (demand-paging.ts): the VM built through this
   * backend's own calls, the pass run through its stage-2 and KVM Userfault rules, userfaultfd modelled.
   */
  async runDemandPaging(config: DemandPagingConfig): Promise<DemandPagingResult> {
    this.system('runDemandPaging')
    return runEmulatorDemandPaging({ kvm: this, memory: this.memory, vmState: vmStateOf }, config)
  }

  /**
   * userfaultfd(2) (`via: 'syscall'`) or USERFAULTFD_IOC_NEW on /dev/userfaultfd (`via: 'dev'`), both
   * new_userfaultfd(): flags other than O_CLOEXEC, O_NONBLOCK and UFFD_USER_MODE_ONLY -> EINVAL. The
   * caller is root, so neither path is EPERM. The uffd takes the lowest free fd.
   */
  async openUffd(opts: { via: 'syscall' | 'dev'; flags?: number }): Promise<Uffd> {
    if (opts.via !== 'syscall' && opts.via !== 'dev') throw new TypeError(`via: unknown '${String(opts.via)}'`)
    const op = opts.via === 'dev' ? 'USERFAULTFD_IOC_NEW' : 'userfaultfd'
    this.system(op)
    const flags = int32(opts.flags ?? 0, 'flags')
    check(op, checkUserfaultfdFlags(flags) ?? null)
    const ctx = new Userfaultfd(flags)
    const uffd = new EmulatorUffd(this, ctx, check(op, this.fds.install({ kind: 'userfaultfd', uffd: ctx })))
    this.uffds.add(uffd)
    return uffd
  }

  async close(): Promise<void> {
    if (this.closed) return
    for (const vm of [...this.vms]) await vm.close()
    for (const gmem of [...this.gmems]) await gmem.close()
    for (const uffd of [...this.uffds]) await uffd.close()
    for (const mapping of [...this.mappings]) await mapping.close()
    this.fds.close(this.systemFd)
    this.closed = true
  }
}

class EmulatorVm implements Vm {
  readonly type: number
  /** How this VM's vCPUs reach guest memory: its memslots over the backend's host address space. */
  readonly memory: GuestMemory
  private readonly vcpus = new Set<EmulatorVcpu>()
  /** The boot memslot's host memory, made by the first loadProgram (harness/guest-program.ts). */
  private boot: Promise<EmulatorMapping> | undefined
  private closed = false

  constructor(
    private readonly backend: EmulatorBackend,
    readonly state: VmState,
    readonly fd: number,
  ) {
    this.type = state.type
    this.memory = new GuestMemory(state, backend.memory)
  }

  private live(op: string): VmState {
    if (this.closed) throw new KvmError('EBADF', op, `VM fd ${this.fd} is closed`)
    return this.state
  }

  async checkExtension(cap: number): Promise<number> {
    return this.live('KVM_CHECK_EXTENSION').checkExtension(integer(cap, 'cap'))
  }

  async enableCap(cap: number, args?: readonly U64In[], flags = 0): Promise<number> {
    const vm = this.live('KVM_ENABLE_CAP')
    return check('KVM_ENABLE_CAP', vm.enableCap(u32(cap, 'cap'), u64Words(args, 4, 'args'), u32(flags, 'flags')))
  }

  async setUserMemoryRegion(region: UserspaceMemoryRegion): Promise<void> {
    const op = 'KVM_SET_USER_MEMORY_REGION'
    return this.setMemoryRegion(op, this.live(op), legacyRegion(region))
  }

  async setUserMemoryRegion2(region: UserspaceMemoryRegion2): Promise<void> {
    const op = 'KVM_SET_USER_MEMORY_REGION2'
    return this.setMemoryRegion(op, this.live(op), region2(region))
  }

  /** kvm->slots_lock: memslot updates of a VM happen one at a time, a held one included. */
  private slotsLock: Promise<void> = Promise.resolve()

  /**
   * The checks, then a DELETE or MOVE's KVM_MEMSLOT_INVALID window (empty unless a self-test holds it
   * open with holdMemslotInvalidation()), then the commit.
   */
  private setMemoryRegion(op: MemslotIoctl, vm: VmState, region: MemoryRegion): Promise<void> {
    const update = this.slotsLock.then(async () => {
      const prepared = check(op, vm.prepareMemoryRegion(op, region, (fd) => this.backend.fds.get(fd)))
      if (prepared === null) return
      if (vm.invalidateMemslot(prepared)) {
        const hold = vm.takeInvalidationHold()
        if (hold !== undefined) {
          hold.reached()
          await hold.released
        }
      }
      vm.commitMemoryRegion(prepared)
    })
    this.slotsLock = update.catch(() => undefined)
    return update
  }

  async createGuestMemfd(opts: { size: U64In; flags?: U64In; reserved?: readonly U64In[] }): Promise<GuestMemfd> {
    const op = 'KVM_CREATE_GUEST_MEMFD'
    const vm = this.live(op)
    const size = u64(opts.size, 'size')
    const flags = u64(opts.flags ?? 0, 'flags')
    u64Words(opts.reserved, 6, 'reserved') // read by the kernel, never checked
    const file = check(op, vm.createGuestMemfd(size, flags, this.backend.ino()))
    const fd = this.backend.fds.install({ kind: 'guest_memfd', file })
    if (fd === 'EMFILE') file.release()
    const gmem = new EmulatorGuestMemfd(this.backend, file, check(op, fd))
    this.backend.gmems.add(gmem)
    return gmem
  }

  async setMemoryAttributes(attrs: MemoryAttributes): Promise<void> {
    const vm = this.live('KVM_SET_MEMORY_ATTRIBUTES')
    check('KVM_SET_MEMORY_ATTRIBUTES', vm.setMemoryAttributes(memoryAttributes(attrs)) ?? null)
  }

  async getDirtyLog(slot: number): Promise<Uint8Array> {
    const vm = this.live('KVM_GET_DIRTY_LOG')
    return check('KVM_GET_DIRTY_LOG', vm.getDirtyLog(u32(slot, 'slot')))
  }

  async setNrMmuPages(pages: number): Promise<void> {
    const vm = this.live('KVM_SET_NR_MMU_PAGES')
    check('KVM_SET_NR_MMU_PAGES', vm.setNrMmuPages(BigInt(count(pages, 'pages'))) ?? null)
  }

  async createVcpu(id: number): Promise<Vcpu> {
    const op = 'KVM_CREATE_VCPU'
    const vm = this.live(op)
    const vcpuId = u32(id, 'id')
    check(op, vm.createVcpu(vcpuId) ?? null)
    const state = new VcpuState(vcpuId, vm, this.memory)
    const fd = this.backend.fds.install({ kind: 'vcpu', vcpu: state })
    if (fd === 'EMFILE') {
      // kvm_vm_ioctl_create_vcpu(): create_vcpu_fd() failed, so the vCPU is destroyed and its id freed.
      state.close()
      vm.vcpuIds.delete(vcpuId)
    }
    const vcpu = new EmulatorVcpu(this, state, check(op, fd))
    this.vcpus.add(vcpu)
    return vcpu
  }

  /**
   * The boot memslot, as the native backend makes it: on the VM's first loadProgram, 2 MiB of anonymous
   * memory registered as memslot 0 at GPA 0 through the memslot rules, so a test that already holds
   * slot 0 or those GPAs gets that errno. Made once: a test that deletes the slot later keeps it deleted.
   */
  bootMemory(): Promise<EmulatorMapping> {
    this.boot ??= (async () => {
      const mapping = this.backend.map(anonymousObject(), BigInt(BOOT_SLOT_SIZE), 0n, 'anonymous', null, null)
      try {
        await this.setUserMemoryRegion({
          slot: BOOT_SLOT, flags: 0, guestPhysAddr: BOOT_SLOT_GPA, memorySize: BOOT_SLOT_SIZE, userspaceAddr: mapping.addr,
        })
      } catch (e) {
        await mapping.close()
        this.boot = undefined
        throw e
      }
      return mapping
    })()
    return this.boot
  }

  /** A vCPU fd was closed: its number goes back to the fd table. */
  forget(vcpu: EmulatorVcpu): void {
    this.backend.fds.close(vcpu.fd)
    this.vcpus.delete(vcpu)
  }

  /**
   * close(2) of the VM fd, after closing every vCPU of it (a running one returns `intr`) and before
   * unmapping the boot memory. Its guest_memfd files stay open and usable: each holds a reference to the
   * VM, which is destroyed (memslots freed) when the last reference goes, as kvm_put_kvm() does.
   */
  async close(): Promise<void> {
    this.live('close')
    for (const vcpu of [...this.vcpus]) vcpu.release()
    this.closed = true
    this.backend.fds.close(this.fd)
    this.backend.vms.delete(this)
    this.state.release()
    const boot = this.boot
    this.boot = undefined
    await (await boot?.catch(() => undefined))?.close()
  }
}

/**
 * A vCPU fd. While a run is in flight every other call but kick() is EBUSY, as the native backend
 * refuses calls while the vCPU's thread is busy (the kernel itself would wait on vcpu->mutex).
 */
class EmulatorVcpu implements Vcpu {
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

class EmulatorGuestMemfd implements GuestMemfd {
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

class EmulatorMapping implements HostMapping {
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

  async fill(offset: U64In, length: U64In, byte: number): Promise<void> {
    const at = this.addr + u64(offset, 'offset')
    const len = u64(length, 'length')
    const value = byteValue(byte)
    const space = this.backend.memory
    const stop = userfaultStop(space, at, len)
    const reach = bytesBefore(stop, at, len)
    const fault = space.fill(at, reach, value)
    faultedIn(space, at, fault !== undefined ? fault.address : at + reach, true)
    hostAccess('HostMapping.fill', fault)
    if (stop !== undefined) this.stopped('HostMapping.fill', stop)
  }

  async findMismatch(offset: U64In, length: U64In, byte: number): Promise<bigint> {
    const at = this.addr + u64(offset, 'offset')
    const len = u64(length, 'length')
    const value = byteValue(byte)
    const space = this.backend.memory
    const stop = userfaultStop(space, at, len)
    const reach = bytesBefore(stop, at, len)
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

/**
 * A userfaultfd of the emulated process (userfaultfd.ts, uffd-registrations.ts, uffd-mfill.ts). Every
 * call on a closed one is EBADF; every call but UFFDIO_API, before a successful UFFDIO_API, is EINVAL
 * (userfaultfd_ioctl(), userfaultfd_read()). None of them waits.
 */
class EmulatorUffd implements Uffd {
  private closed = false

  constructor(
    private readonly backend: EmulatorBackend,
    readonly ctx: Userfaultfd,
    readonly fd: number,
  ) {}

  private live(op: string): Userfaultfd {
    if (this.closed) throw new KvmError('EBADF', op, `userfaultfd ${this.fd} is closed`)
    if (op !== 'UFFDIO_API' && !this.ctx.initialized) throw new KvmError('EINVAL', op, 'no UFFDIO_API yet')
    return this.ctx
  }

  /** UFFDIO_API with api = UFFD_API. */
  async api(features: U64In = 0): Promise<{ features: bigint; ioctls: bigint }> {
    const requested = u64(features, 'features')
    return check('UFFDIO_API', this.live('UFFDIO_API').api(BigInt(UFFD_API), requested))
  }

  /** UFFDIO_REGISTER */
  async register(range: { start: U64In; len: U64In }, mode: number): Promise<{ ioctls: bigint }> {
    const start = u64(range.start, 'start')
    const len = u64(range.len, 'len')
    const m = u64(mode, 'mode')
    return { ioctls: check('UFFDIO_REGISTER', register(this.backend.memory, this.live('UFFDIO_REGISTER'), start, len, m)) }
  }

  /** UFFDIO_UNREGISTER: wakes the waiters of the range's MISSING-registered parts, then unregisters it. */
  async unregister(range: { start: U64In; len: U64In }): Promise<void> {
    const start = u64(range.start, 'start')
    const len = u64(range.len, 'len')
    check('UFFDIO_UNREGISTER', unregister(this.backend.memory, this.live('UFFDIO_UNREGISTER'), start, len) ?? null)
  }

  /** UFFDIO_COPY */
  async copy(op: { dst: U64In; data: Uint8Array; mode?: number }): Promise<bigint> {
    if (!(op.data instanceof Uint8Array)) throw new TypeError('data: expected a Uint8Array')
    return this.mfill('UFFDIO_COPY', { kind: 'copy', dst: u64(op.dst, 'dst'), data: op.data, mode: u64(op.mode ?? 0, 'mode') })
  }

  /** UFFDIO_ZEROPAGE */
  async zeropage(op: { start: U64In; len: U64In; mode?: number }): Promise<bigint> {
    return this.mfill('UFFDIO_ZEROPAGE', { kind: 'zeropage', dst: u64(op.start, 'start'), len: u64(op.len, 'len'), mode: u64(op.mode ?? 0, 'mode') })
  }

  /** UFFDIO_CONTINUE */
  async continue(op: { start: U64In; len: U64In; mode?: number }): Promise<bigint> {
    return this.mfill('UFFDIO_CONTINUE', { kind: 'continue', dst: u64(op.start, 'start'), len: u64(op.len, 'len'), mode: u64(op.mode ?? 0, 'mode') })
  }

  /**
   * userfaultfd_copy() and friends: the checks, mfill_atomic(), then a wake of [dst, dst + done) unless
   * DONTWAKE; nothing done -> the error; part of the range done -> EAGAIN.
   */
  private mfill(name: string, op: MfillOp): bigint {
    const ctx = this.live(name)
    check(name, checkMfill(op) ?? null)
    const r = mfill(this.backend.memory, op)
    if (r.done === 0n) throw new KvmError(r.error ?? 'EINVAL', name)
    if (!dontWake(op)) ctx.wake(op.dst, r.done)
    if (r.error !== undefined) throw new KvmError('EAGAIN', name, `${r.done} bytes done, then ${r.error}`)
    return r.done
  }

  /** UFFDIO_WAKE: wakes the waiters of the range (registered or not). */
  async wake(range: { start: U64In; len: U64In }): Promise<void> {
    const start = u64(range.start, 'start')
    const len = u64(range.len, 'len')
    const ctx = this.live('UFFDIO_WAKE')
    check('UFFDIO_WAKE', validateRange(start, len) ?? null)
    ctx.wake(start, len)
  }

  /** read(2) of pending uffd_msg records, without blocking; each message is read once. */
  async readEvents(max = 64): Promise<UffdEvent[]> {
    const n = count(max, 'max')
    if (this.closed) throw new KvmError('EBADF', 'read', `userfaultfd ${this.fd} is closed`)
    if (n === 0) return []
    return this.live('read').read(n).map((m): UffdEvent => ({ kind: 'pagefault', address: m.address, flags: m.flags }))
  }

  /** close(2): userfaultfd_release() unregisters everything it covers and wakes every waiter. */
  async close(): Promise<void> {
    if (this.closed) throw new KvmError('EBADF', 'close', `userfaultfd ${this.fd} is closed`)
    this.closed = true
    this.backend.memory.uffd.clearUffd(this.ctx)
    this.ctx.release()
    this.backend.fds.close(this.fd)
    this.backend.uffds.delete(this)
  }
}

class EmulatorUserfaultBitmap implements UserfaultBitmap {
  readonly addr: bigint

  constructor(
    private readonly mapping: EmulatorMapping,
    readonly npages: number,
  ) {
    this.addr = mapping.addr
  }

  /**
   * atomic fetch_or / fetch_and: the read and the write happen in one step, with no await between, so
   * that calls in flight together (several resolver "threads") cannot lose each other's bits.
   */
  private async update(n: number, set: boolean): Promise<void> {
    const { byte, mask } = bitLocation(n, this.npages)
    this.mapping.updateByte(byte, (old) => (set ? old | mask : old & ~mask))
  }

  set(n: number): Promise<void> {
    return this.update(n, true)
  }

  /** Single-threaded model: the release ordering the series asks for holds trivially. */
  clear(n: number): Promise<void> {
    return this.update(n, false)
  }

  async test(n: number): Promise<boolean> {
    const { byte, mask } = bitLocation(n, this.npages)
    const [value] = await this.mapping.read(byte, 1)
    return (value! & mask) !== 0
  }

  fill(value: boolean): Promise<void> {
    return this.mapping.write(0, filledBitmap(this.npages, value))
  }

  async words(): Promise<BigUint64Array> {
    return bitmapWords(await this.mapping.read(0, bitmapBytes(this.npages)))
  }

  close(): Promise<void> {
    return this.mapping.close()
  }
}

/** The emulator backend with the given kernel profile (DEFAULT_PROFILE, userfault-v3, by default). */
export function createEmulatorBackend(opts: EmulatorOptions = {}): Backend {
  const profile = opts.profile ?? DEFAULT_PROFILE
  return new EmulatorBackend(typeof profile === 'string' ? getProfile(profile) : profile)
}

/**
 * The model behind an emulator VM handle, for the emulator's own later parts (vCPU, stage-2) and its
 * specs. Not part of the contract: tests in suites/ never call it.
 */
export function vmStateOf(vm: Vm): VmState {
  if (!(vm instanceof EmulatorVm)) throw new TypeError('not a VM of the emulator backend')
  return vm.state
}

/**
 * What KVM has mapped of `vm`'s guest memory and at what size (4K or 2M), for the emulator's self-tests
 * of the stage-2 rules (zaps, 4 KiB-only while KVM_MEM_USERFAULT is set, huge-page recovery, pre-fault).
 * `warnings` are the kernel WARNs the VM's calls raised. Not part of the contract.
 */
export function stage2Of(vm: Vm): Stage2View & { readonly warnings: readonly string[] } {
  const state = vmStateOf(vm)
  return {
    level: (gfn) => state.stage2.level(gfn),
    mappings: () => state.stage2.mappings(),
    get warnings() {
      return state.warnings
    },
  }
}

/**
 * For self-tests: the next DELETE or MOVE of a memslot of `vm` stops in its KVM_MEMSLOT_INVALID window
 * (the old slot invalid and zapped, its ioctl not yet returned) until `release()`; `reached` resolves
 * once it is there. Meanwhile vCPU faults on the slot are retried and KVM_PRE_FAULT_MEMORY gets EAGAIN.
 */
export function holdMemslotInvalidation(vm: Vm): { reached: Promise<void>; release(): void } {
  return vmStateOf(vm).holdNextInvalidation()
}

/** The loader backends/index.ts calls: the emulator is always available. An unknown profile throws. */
export function loadEmulator(opts: EmulatorOptions = {}): BackendLoad {
  return { available: true, backend: createEmulatorBackend(opts) }
}
