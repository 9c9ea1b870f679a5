// The native backend: the Backend contract over the kvmconf_native addon, which issues the real
// ioctls on this machine's /dev/kvm. Everything here runs on the main thread; the addon runs KVM_RUN
// and host memory accesses on its own threads.

import { readFileSync } from 'node:fs'
import os from 'node:os'

import type {
  Backend, BackendInfo, Backing, Feature, HostMapping, U64In, Uffd, UserfaultBitmap, Vm,
} from '../../harness/backend.ts'
import type { DemandPagingConfig, DemandPagingResult } from '../../harness/demand-paging-types.ts'
import { KvmError } from '../../harness/errors.ts'
import { type Handle, type NativeAddon, native, requireAddon } from './addon.ts'
import { NativeContext } from './context.ts'
import { runNativeDemandPaging } from './demand-paging.ts'
import { NativeHostMapping } from './host-mapping.ts'
import { count, int, u32, u64 } from './u64.ts'
import { NativeUffd } from './uffd.ts'
import { NativeUserfaultBitmap } from './userfault-bitmap.ts'
import { NativeVm } from './vm.ts'

/** What this backend can drive on a machine with a working /dev/kvm. */
export const NATIVE_FEATURES: readonly Feature[] = ['demand-paging', 'host-faults', 'userfaultfd', 'vcpu']

const BACKINGS: readonly Backing[] = ['anonymous', 'anonymous_thp', 'anonymous_hugetlb', 'shmem', 'shared_hugetlb']

/** Opens /dev/kvm; throws KvmError (e.g. ENOENT, EACCES from 'open') when it cannot. */
export function createNativeBackend(addon: NativeAddon = requireAddon()): Backend {
  return new NativeBackend(addon)
}

class NativeBackend implements Backend {
  readonly name = 'native'
  readonly systemFd: number
  private readonly ctx: NativeContext
  private readonly sys: Handle
  private closed = false

  constructor(addon: NativeAddon) {
    this.ctx = new NativeContext(addon, addon.pageSize())
    this.sys = native(() => addon.systemOpen())
    this.systemFd = native(() => addon.systemFd(this.sys))
  }

  async info(): Promise<BackendInfo> {
    return {
      kernelRelease: os.release(),
      arch: unameMachine(os.arch()),
      pageSize: this.ctx.pageSize,
      profile: null,
      backings: availableBackings(),
      features: [...NATIVE_FEATURES],
      host: os.hostname(),
    }
  }

  /** KVM_GET_API_VERSION */
  async getApiVersion(): Promise<number> {
    return native(() => this.ctx.addon.getApiVersion(this.sys))
  }

  /** KVM_CHECK_EXTENSION on /dev/kvm */
  async checkExtension(cap: number): Promise<number> {
    const c = u32(cap, 'cap')
    return native(() => this.ctx.addon.checkExtension(this.sys, c))
  }

  /** KVM_CREATE_VM */
  async createVm(opts: { type?: number } = {}): Promise<Vm> {
    const type = u32(opts.type ?? 0, 'type')
    const h = native(() => this.ctx.addon.createVm(this.sys, type))
    return new NativeVm(this.ctx, h, type)
  }

  /** mmap(2) of host memory; shmem is a memfd (MFD_CLOEXEC) mapped MAP_SHARED; `noreserve`: MAP_NORESERVE. */
  async mmap(opts: { size: U64In; backing: Backing; noreserve?: boolean }): Promise<HostMapping> {
    this.checkOpen('mmap')
    const size = u64(opts.size, 'size')
    if (!BACKINGS.includes(opts.backing)) throw new TypeError(`backing: ${String(opts.backing)} is not a Backing`)
    const noreserve = opts.noreserve ?? false
    return new NativeHostMapping(this.ctx, native(() => this.ctx.addon.mappingCreate(size, opts.backing, noreserve)))
  }

  async createUserfaultBitmap(npages: number): Promise<UserfaultBitmap> {
    this.checkOpen('mmap')
    const n = count(npages, 'npages')
    return new NativeUserfaultBitmap(this.ctx, native(() => this.ctx.addon.bitmapCreate(n)), n)
  }

  /** userfaultfd(2), or USERFAULTFD_IOC_NEW on /dev/userfaultfd. */
  async openUffd(opts: { via: 'syscall' | 'dev'; flags?: number }): Promise<Uffd> {
    this.checkOpen(opts.via === 'dev' ? 'USERFAULTFD_IOC_NEW' : 'userfaultfd')
    if (opts.via !== 'syscall' && opts.via !== 'dev') throw new TypeError(`via: ${String(opts.via)} is not 'syscall' or 'dev'`)
    const flags = int(opts.flags ?? 0, 'flags')
    return new NativeUffd(this.ctx, native(() => this.ctx.addon.uffdOpen(opts.via, flags)))
  }

  /** demand_paging_test's run on the addon's threads (demand-paging.ts). */
  async runDemandPaging(config: DemandPagingConfig): Promise<DemandPagingResult> {
    this.checkOpen('KVM_CREATE_VM')
    return runNativeDemandPaging({ backend: this, ctx: this.ctx }, config)
  }

  /** Frees every object still open (vCPUs and VMs first), then /dev/kvm. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    const open = [...this.ctx.open]
    const order = (o: unknown) => (o instanceof NativeVm ? 0 : 1)
    for (const obj of open.sort((a, b) => order(a) - order(b))) {
      if (this.ctx.open.has(obj)) await obj.close().catch(() => {})
    }
    try {
      native(() => this.ctx.addon.systemClose(this.sys))
    } catch (e) {
      if (!KvmError.is(e) || e.code !== 'EBADF') throw e // EBADF: closed already through the raw addon API
    }
  }

  private checkOpen(op: string): void {
    if (this.closed) throw new KvmError('EBADF', op)
  }
}

/** `uname -m` spelling of Node's os.arch(). */
function unameMachine(arch: string): string {
  const names: Record<string, string> = { x64: 'x86_64', arm64: 'aarch64', ia32: 'i686', arm: 'armv7l', ppc64: 'ppc64le' }
  return names[arch] ?? arch
}

function readText(file: string): string | null {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return null
  }
}

/** The backings mmap() can create here: THP unless disabled, hugetlb only with reserved huge pages. */
export function availableBackings(): Backing[] {
  const backings: Backing[] = ['anonymous', 'shmem']
  const thp = readText('/sys/kernel/mm/transparent_hugepage/enabled')
  if (thp !== null && !thp.includes('[never]')) backings.splice(1, 0, 'anonymous_thp')
  const nr = Number(readText('/proc/sys/vm/nr_hugepages')?.trim() ?? '0')
  if (nr > 0) backings.push('anonymous_hugetlb', 'shared_hugetlb')
  return backings
}
