// The emulator's /dev/kvm and host process: capabilities, VMs, host memory (mmap, memfds), userfault
// bitmaps, userfaultfds and the demand-paging run, each handed out as its contract object.

import { hostname } from 'node:os'
import type {
  Backend,
  BackendInfo,
  Backing,
  HostMapping,
  U64In,
  Uffd,
  UserfaultBitmap,
  Vm,
} from '../../../harness/backend.ts'
import type { DemandPagingConfig, DemandPagingResult } from '../../../harness/demand-paging-types.ts'
import { KvmError } from '../../../harness/errors.ts'
import { KVM_API_VERSION } from '../../../harness/uapi/kvm.ts'
import {
  AVAILABLE_BACKINGS,
  AddressSpace,
  UNAVAILABLE_BACKINGS,
  anonymousObject,
  shmemObject,
  type MemoryObject,
} from '../address-space.ts'
import { checkExtension } from '../caps.ts'
import { runEmulatorDemandPaging } from '../demand-paging.ts'
import { FdTable, type OpenFile } from '../fd-table.ts'
import type { GuestMemfdFile } from '../guest-memfd.ts'
import { PAGE_SIZE } from '../page-store.ts'
import { DEFAULT_PROFILE, getProfile, type KernelProfile } from '../profiles.ts'
import { count, int32, integer, u64 } from '../u64.ts'
import { bitmapBytes } from '../userfault-bitmap.ts'
import { Userfaultfd, checkUserfaultfdFlags } from '../userfaultfd.ts'
import { VmState, checkCreateVm } from '../vm.ts'
import { check } from './errors.ts'
import { EmulatorVm, vmStateOf } from './vm.ts'
import type { EmulatorGuestMemfd } from './guest-memfd.ts'
import { EmulatorMapping } from './mapping.ts'
import { EmulatorUffd } from './uffd.ts'
import { EmulatorUserfaultBitmap } from './userfault-bitmap.ts'

export interface EmulatorOptions {
  /** A profile name from profiles.ts, or a variant built with defineProfile(); DEFAULT_PROFILE when omitted. */
  profile?: string | KernelProfile | undefined
}

export class EmulatorBackend implements Backend {
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

/** The emulator backend with the given kernel profile (DEFAULT_PROFILE, userfault-v3, by default). */
export function createEmulatorBackend(opts: EmulatorOptions = {}): Backend {
  const profile = opts.profile ?? DEFAULT_PROFILE
  return new EmulatorBackend(typeof profile === 'string' ? getProfile(profile) : profile)
}
