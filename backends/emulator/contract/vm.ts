// A VM fd of the emulator: memslots, guest_memfd, memory attributes, dirty logs and vCPUs, over the
// VmState model (../vm.ts).

import type {
  GuestMemfd,
  MemoryAttributes,
  U64In,
  UserspaceMemoryRegion,
  UserspaceMemoryRegion2,
  Vcpu,
  Vm,
} from '../../../harness/backend.ts'
import { KvmError } from '../../../harness/errors.ts'
import { BOOT_SLOT, BOOT_SLOT_GPA, BOOT_SLOT_SIZE } from '../../../harness/guest-program.ts'
import { anonymousObject } from '../address-space.ts'
import { GuestMemory } from '../guest-memory.ts'
import { legacyRegion, memoryAttributes, region2, u64Words } from '../inputs.ts'
import type { MemoryRegion, MemslotIoctl } from '../memslots.ts'
import { count, integer, u32, u64 } from '../u64.ts'
import { VcpuState } from '../vcpu.ts'
import { VmState } from '../vm.ts'
import { check } from './errors.ts'
import type { EmulatorBackend } from './backend.ts'
import { EmulatorVcpu } from './vcpu.ts'
import { EmulatorGuestMemfd } from './guest-memfd.ts'
import type { EmulatorMapping } from './mapping.ts'

export class EmulatorVm implements Vm {
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
 * The model behind an emulator VM handle, for the emulator's own later parts (vCPU, stage-2) and its
 * specs. Not part of the contract: tests in suites/ never call it.
 */
export function vmStateOf(vm: Vm): VmState {
  if (!(vm instanceof EmulatorVm)) throw new TypeError('not a VM of the emulator backend')
  return vm.state
}
