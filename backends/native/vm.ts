// Vm over the addon: a KVM VM fd and its ioctls, issued on the main thread (none waits without bound).

import type {
  GuestMemfd, MemoryAttributes, U64In, UserspaceMemoryRegion, UserspaceMemoryRegion2, Vcpu, Vm,
} from '../../harness/backend.ts'
import { type Handle, native } from './addon.ts'
import type { NativeContext } from './context.ts'
import { NativeGuestMemfd } from './guest-memfd.ts'
import { count, u32, u64, u64Array } from './u64.ts'
import { NativeHostMapping } from './host-mapping.ts'
import { NativeVcpu } from './vcpu.ts'
import { BOOT_SLOT, BOOT_SLOT_GPA, BOOT_SLOT_SIZE } from '../../harness/guest-program.ts'
import type { HostMapping } from '../../harness/backend.ts'

/** KVM_MEM_MAX_NR_PAGES: no memslot has more pages, so no dirty bitmap has more bits. */
const MAX_SLOT_PAGES = 2 ** 31 - 1

export class NativeVm implements Vm {
  readonly fd: number
  private readonly vcpus = new Set<NativeVcpu>()
  /** Pages of each memslot this VM has (by the u32 slot field), for sizing KVM_GET_DIRTY_LOG's bitmap. */
  private readonly slotPages = new Map<number, number>()
  /** The boot memslot's host memory, made by the first loadProgram (harness/guest-program.ts). */
  private boot: Promise<HostMapping> | undefined

  constructor(private readonly ctx: NativeContext, readonly handle: Handle, readonly type: number) {
    this.fd = native(() => ctx.addon.vmFd(handle))
    ctx.track(this)
  }

  /** KVM_CHECK_EXTENSION on the VM fd. */
  async checkExtension(cap: number): Promise<number> {
    const c = u32(cap, 'cap')
    return native(() => this.ctx.addon.vmCheckExtension(this.handle, c))
  }

  /** KVM_ENABLE_CAP (struct kvm_enable_cap: cap, flags, args[4], pad[64] zeroed). */
  async enableCap(cap: number, args: readonly U64In[] = [], flags = 0): Promise<number> {
    const c = u32(cap, 'cap')
    const f = u32(flags, 'flags')
    const a = u64Array(args, 4, 'args')
    return native(() => this.ctx.addon.vmEnableCap(this.handle, c, f, a))
  }

  /** KVM_SET_USER_MEMORY_REGION */
  async setUserMemoryRegion(region: UserspaceMemoryRegion): Promise<void> {
    const slot = u32(region.slot, 'slot')
    const flags = u32(region.flags, 'flags')
    const gpa = u64(region.guestPhysAddr, 'guestPhysAddr')
    const size = u64(region.memorySize, 'memorySize')
    const hva = u64(region.userspaceAddr, 'userspaceAddr')
    native(() => this.ctx.addon.vmSetUserMemoryRegion(this.handle, slot, flags, gpa, size, hva))
    this.trackSlot(slot, size)
  }

  /** KVM_SET_USER_MEMORY_REGION2: every field of the 160-byte struct, the pad words passed through. */
  async setUserMemoryRegion2(region: UserspaceMemoryRegion2): Promise<void> {
    const slot = u32(region.slot, 'slot')
    const flags = u32(region.flags, 'flags')
    const gpa = u64(region.guestPhysAddr, 'guestPhysAddr')
    const size = u64(region.memorySize, 'memorySize')
    const hva = u64(region.userspaceAddr, 'userspaceAddr')
    const gmemOffset = u64(region.guestMemfdOffset ?? 0, 'guestMemfdOffset')
    const gmemFd = u32(region.guestMemfd ?? 0, 'guestMemfd')
    const pad1 = u32(region.pad1 ?? 0, 'pad1')
    const bitmap = u64(region.userfaultBitmap ?? 0, 'userfaultBitmap')
    const pad2 = u64Array(region.pad2, 13, 'pad2')
    native(() => this.ctx.addon.vmSetUserMemoryRegion2(
      this.handle, slot, flags, gpa, size, hva, gmemOffset, gmemFd, pad1, bitmap, pad2))
    this.trackSlot(slot, size)
  }

  /** KVM_CREATE_GUEST_MEMFD (struct kvm_create_guest_memfd: size, flags, reserved[6]). */
  async createGuestMemfd(opts: { size: U64In; flags?: U64In; reserved?: readonly U64In[] }): Promise<GuestMemfd> {
    const size = u64(opts.size, 'size')
    const flags = u64(opts.flags ?? 0, 'flags')
    const reserved = u64Array(opts.reserved, 6, 'reserved')
    const h = native(() => this.ctx.addon.vmCreateGuestMemfd(this.handle, size, flags, reserved))
    return new NativeGuestMemfd(this.ctx, h, flags)
  }

  /** KVM_SET_MEMORY_ATTRIBUTES */
  async setMemoryAttributes(attrs: MemoryAttributes): Promise<void> {
    const address = u64(attrs.address, 'address')
    const size = u64(attrs.size, 'size')
    const attributes = u64(attrs.attributes, 'attributes')
    const flags = u64(attrs.flags ?? 0, 'flags')
    native(() => this.ctx.addon.vmSetMemoryAttributes(this.handle, address, size, attributes, flags))
  }

  /** KVM_GET_DIRTY_LOG: ceil(npages/64) little-endian u64 words for the slot as this VM created it. */
  async getDirtyLog(slot: number): Promise<Uint8Array> {
    const s = u32(slot, 'slot')
    const npages = this.slotPages.get(s) ?? 0
    return native(() => this.ctx.addon.vmGetDirtyLog(this.handle, s, npages))
  }

  /** KVM_SET_NR_MMU_PAGES */
  async setNrMmuPages(pages: number): Promise<void> {
    const n = u64(pages, 'pages')
    native(() => this.ctx.addon.vmSetNrMmuPages(this.handle, n))
  }

  /** KVM_CREATE_VCPU (and the mmap of its kvm_run). */
  async createVcpu(id: number): Promise<Vcpu> {
    const i = u32(id, 'id')
    const h = native(() => this.ctx.addon.vmCreateVcpu(this.handle, i))
    const vcpu = new NativeVcpu(this.ctx, h, i, (v) => this.vcpus.delete(v), () => this.bootMemory())
    this.vcpus.add(vcpu)
    return vcpu
  }

  /** Closes every vCPU of the VM, then the VM fd, then the boot memory. */
  async close(): Promise<void> {
    native(() => this.ctx.addon.vmFd(this.handle))  // EBADF on a second close, before touching the vCPUs
    for (const v of [...this.vcpus]) await v.close().catch(() => {})
    native(() => this.ctx.addon.vmClose(this.handle))
    this.ctx.untrack(this)
    const boot = this.boot
    this.boot = undefined
    if (boot) await (await boot.catch(() => undefined))?.close()
  }

  /**
   * The boot memslot's host memory: on first use, 2 MiB of anonymous memory registered as memslot 0 at
   * GPA 0. A test that already put its own memslot there gets that errno from loadProgram.
   */
  bootMemory(): Promise<HostMapping> {
    this.boot ??= (async () => {
      const h = native(() => this.ctx.addon.mappingCreate(BigInt(BOOT_SLOT_SIZE), 'anonymous', false))
      const mem = new NativeHostMapping(this.ctx, h)
      try {
        await this.setUserMemoryRegion({
          slot: BOOT_SLOT, flags: 0, guestPhysAddr: BOOT_SLOT_GPA, memorySize: BOOT_SLOT_SIZE, userspaceAddr: mem.addr,
        })
      } catch (e) {
        await mem.close()
        this.boot = undefined
        throw e
      }
      return mem
    })()
    return this.boot
  }

  private trackSlot(slot: number, size: bigint): void {
    if (size === 0n) {
      this.slotPages.delete(slot)
    } else {
      const pages = size / BigInt(this.ctx.pageSize)
      this.slotPages.set(slot, count(Number(pages > BigInt(MAX_SLOT_PAGES) ? BigInt(MAX_SLOT_PAGES) : pages), 'npages'))
    }
  }
}
