// The remote backend: the Backend contract over gRPC to `kvmconf agent`. Each object is a handle in
// the agent's session; each method is one call, converted at this edge (convert.ts), with a deadline
// (connection.ts). What the hosted backend threw comes back as the same typed error; what the agent or
// the network did is an AgentError.

import type { KernelLogSource } from '../../harness/kernel-log.ts'
import type { KernelLog } from '../../harness/results.ts'
import type {
  Backend, BackendInfo, Backing, Feature, GuestMemfd, GuestMemfdStat, HostMapping, MemoryAttributes, PreFaultResult,
  RunOptions, U64In, Uffd, UffdEvent, UserfaultBitmap, UserspaceMemoryRegion, UserspaceMemoryRegion2, Vcpu, VcpuExit, Vm,
} from '../../harness/backend.ts'
import type { DemandPagingConfig, DemandPagingResult } from '../../harness/demand-paging-types.ts'
import type { GuestProgram } from '../../harness/guest-program.ts'
import { DEFAULT_DEMAND_PAGING_TIMEOUT_MS } from '../../harness/kvm-util/demand-paging.ts'
import { fromDemandPagingResult, toDemandPagingConfig } from './convert-demand-paging.ts'
import { AgentConnection, type ConnectOptions } from './connection.ts'
import {
  bytesArg, bytesFrom, fromLimits, fromMismatch, fromStat, fromUffdEvents, fromWords, num, optNum, toInt, toIntList, toOptInt, toRegion, u64From,
} from './convert.ts'
import { fromExit, fromPreFault, fromProgramStep, toProgram, toRunOptions } from './convert-vcpu.ts'
import { RUN_DEADLINE_MARGIN_MS, type ReplyMsg } from './protocol.ts'
import type { Limits } from './session.ts'

/** What the remote backend can drive through the agent, where the hosted backend can. */
export const REMOTE_FEATURES: readonly Feature[] = ['vcpu', 'userfaultfd', 'host-faults', 'demand-paging']

/** How long past a demand-paging run's own deadline the client waits for its result. */
const DEMAND_PAGING_SLACK_MS = 10_000

/** Connects to the agent and shakes hands; rejects with AgentError when it cannot. */
export async function connectRemote(opts: ConnectOptions): Promise<RemoteBackend> {
  return new RemoteBackend(await AgentConnection.open(opts))
}

type Rpc = AgentConnection

export class RemoteBackend implements Backend, KernelLogSource {
  readonly name = 'remote'
  readonly systemFd: number

  /**
   * Backend.runDemandPaging: present exactly when the hosted backend lists 'demand-paging'. The whole
   * run (vCPU threads, fault handlers, KVM Userfault resolution) happens on the agent in one call; its
   * deadline is the run's own timeoutMs plus slack, since the backend stops an overrunning run itself.
   */
  readonly runDemandPaging?: (config: DemandPagingConfig) => Promise<DemandPagingResult>

  constructor(readonly rpc: Rpc) {
    this.systemFd = rpc.handshake.systemFd
    if (rpc.handshake.info.features.includes('demand-paging')) {
      this.runDemandPaging = async (config) => {
        const msg = toDemandPagingConfig(config)
        const timeout = typeof config.timeoutMs === 'number' && Number.isFinite(config.timeoutMs) && config.timeoutMs > 0
          ? config.timeoutMs : DEFAULT_DEMAND_PAGING_TIMEOUT_MS
        return fromDemandPagingResult(await rpc.invoke('runDemandPaging', msg, 'demandPaging', timeout + DEMAND_PAGING_SLACK_MS))
      }
    }
  }

  /** The hosted backend's info (kernel, arch, profile of the machine under test), its features as far as they cross. */
  async info(): Promise<BackendInfo> {
    const info = this.rpc.handshake.info
    return { ...info, backings: [...info.backings], features: info.features.filter((f) => REMOTE_FEATURES.includes(f)) }
  }

  /** The backend the agent hosts: 'native' or 'emulator'. */
  get hosted(): string {
    return this.rpc.handshake.hostedBackend
  }

  async getApiVersion(): Promise<number> {
    return this.rpc.invoke('getApiVersion', {}, 'number')
  }

  async checkExtension(cap: number): Promise<number> {
    return this.rpc.invoke('checkExtension', { handle: '0', cap: num(cap, 'cap') }, 'number')
  }

  async createVm(opts: { type?: number } = {}): Promise<Vm> {
    const r = await this.rpc.invoke('createVm', { type: optNum(opts.type, 'type') }, 'vm')
    return new RemoteVm(this.rpc, r.handle, r.fd, r.type)
  }

  async mmap(opts: { size: U64In; backing: Backing; noreserve?: boolean }): Promise<HostMapping> {
    const req = { size: toInt(opts.size, 'size'), backing: String(opts.backing), noreserve: opts.noreserve }
    return mapping(this.rpc, await this.rpc.invoke('mmap', req, 'mapping'))
  }

  async createUserfaultBitmap(npages: number): Promise<UserfaultBitmap> {
    const r = await this.rpc.invoke('createUserfaultBitmap', { handle: '0', value: num(npages, 'npages') }, 'bitmap')
    return new RemoteBitmap(this.rpc, r.handle, u64From(r.addr, 'addr'), r.npages)
  }

  async openUffd(opts: { via: 'syscall' | 'dev'; flags?: number }): Promise<Uffd> {
    const r = await this.rpc.invoke('openUffd', { via: String(opts.via), flags: optNum(opts.flags, 'flags') }, 'uffd')
    return new RemoteUffd(this.rpc, r.handle, r.fd)
  }

  /** This session's use of its per-client limits (not part of the contract). */
  async usage(): Promise<{ limits: Limits; used: Limits }> {
    const u = await this.rpc.invoke('usage', {}, 'usage')
    return { limits: fromLimits(u.limits), used: fromLimits(u.used) }
  }

  /**
   * Marks the agent machine's kernel log before a test (`kvmconf run --kmsg` over remote; the agent must
   * have been started with --kmsg). Not part of the contract.
   */
  async kernelLogStart(test: string): Promise<void> {
    await this.rpc.invoke('kernelLogStart', { value: test }, 'done')
  }

  /** The agent machine's kernel log since kernelLogStart(test): its lines, splats and taint. */
  async kernelLogFinish(test: string): Promise<KernelLog> {
    const log = await this.rpc.invoke('kernelLogFinish', { value: test }, 'kernelLog')
    return { lines: log.lines, warnings: log.warnings, taintBefore: Number(log.taintBefore), taintAfter: Number(log.taintAfter) }
  }

  /** Ends the session: the agent frees every VM, fd and mapping it holds for this client. */
  async close(): Promise<void> {
    await this.rpc.close()
  }
}

/** The base of every handle: close() is CloseHandle. */
abstract class RemoteObject {
  constructor(protected readonly rpc: Rpc, readonly handle: string) {}

  async close(): Promise<void> {
    await this.rpc.invoke('close', { handle: this.handle }, 'done')
  }
}

function mapping(rpc: Rpc, r: NonNullable<ReplyMsg['mapping']>): HostMapping {
  return new RemoteMapping(rpc, r.handle, u64From(r.addr, 'addr'), u64From(r.size, 'size'), r.backing as Backing | 'guest_memfd', r.fd ?? null)
}

class RemoteMapping extends RemoteObject implements HostMapping {
  constructor(rpc: Rpc, handle: string, readonly addr: bigint, readonly size: bigint,
    readonly backing: Backing | 'guest_memfd', readonly fd: number | null) {
    super(rpc, handle)
  }

  async read(offset: U64In, length: number): Promise<Uint8Array> {
    const req = { handle: this.handle, offset: toInt(offset, 'offset'), length: num(length, 'length') }
    return bytesFrom(await this.rpc.invoke('mappingRead', req, 'data'))
  }

  async write(offset: U64In, data: Uint8Array): Promise<void> {
    await this.rpc.invoke('mappingWrite', { handle: this.handle, offset: toInt(offset, 'offset'), data: bytesArg(data, 'data') }, 'done')
  }

  async fill(offset: U64In, length: U64In, byte: number): Promise<void> {
    const req = { handle: this.handle, offset: toInt(offset, 'offset'), length: toInt(length, 'length'), byte: num(byte, 'byte') }
    await this.rpc.invoke('mappingFill', req, 'done')
  }

  async findMismatch(offset: U64In, length: U64In, byte: number): Promise<bigint> {
    const req = { handle: this.handle, offset: toInt(offset, 'offset'), length: toInt(length, 'length'), byte: num(byte, 'byte') }
    return fromMismatch(await this.rpc.invoke('mappingFindMismatch', req, 'mismatch'))
  }

  async alias(): Promise<HostMapping> {
    return mapping(this.rpc, await this.rpc.invoke('mappingAlias', { handle: this.handle }, 'mapping'))
  }

  async madvise(advice: number, offset?: U64In, length?: U64In): Promise<void> {
    const req = { handle: this.handle, advice: num(advice, 'advice'), offset: toOptInt(offset, 'offset'), length: toOptInt(length, 'length') }
    await this.rpc.invoke('mappingMadvise', req, 'done')
  }
}

class RemoteVm extends RemoteObject implements Vm {
  constructor(rpc: Rpc, handle: string, readonly fd: number, readonly type: number) {
    super(rpc, handle)
  }

  async checkExtension(cap: number): Promise<number> {
    return this.rpc.invoke('checkExtension', { handle: this.handle, cap: num(cap, 'cap') }, 'number')
  }

  async enableCap(cap: number, args?: readonly U64In[], flags?: number): Promise<number> {
    const req = { handle: this.handle, cap: num(cap, 'cap'), args: toIntList(args, 'args'), flags: optNum(flags, 'flags') }
    return this.rpc.invoke('vmEnableCap', req, 'number')
  }

  async setUserMemoryRegion(region: UserspaceMemoryRegion): Promise<void> {
    const { slot, flags, guestPhysAddr, memorySize, userspaceAddr } = region
    const msg = toRegion({ slot, flags, guestPhysAddr, memorySize, userspaceAddr })
    await this.rpc.invoke('vmSetUserMemoryRegion', { handle: this.handle, region: msg }, 'done')
  }

  async setUserMemoryRegion2(region: UserspaceMemoryRegion2): Promise<void> {
    await this.rpc.invoke('vmSetUserMemoryRegion2', { handle: this.handle, region: toRegion(region) }, 'done')
  }

  async createGuestMemfd(opts: { size: U64In; flags?: U64In; reserved?: readonly U64In[] }): Promise<GuestMemfd> {
    const req = { handle: this.handle, size: toInt(opts.size, 'size'), flags: toOptInt(opts.flags, 'flags'), reserved: toIntList(opts.reserved, 'reserved') }
    const r = await this.rpc.invoke('vmCreateGuestMemfd', req, 'guestMemfd')
    return new RemoteGuestMemfd(this.rpc, r.handle, r.fd, u64From(r.flags, 'flags'))
  }

  async setMemoryAttributes(a: MemoryAttributes): Promise<void> {
    const req = {
      handle: this.handle, address: toInt(a.address, 'address'), size: toInt(a.size, 'size'),
      attributes: toInt(a.attributes, 'attributes'), flags: toOptInt(a.flags, 'flags'),
    }
    await this.rpc.invoke('vmSetMemoryAttributes', req, 'done')
  }

  async getDirtyLog(slot: number): Promise<Uint8Array> {
    return bytesFrom(await this.rpc.invoke('vmGetDirtyLog', { handle: this.handle, value: num(slot, 'slot') }, 'data'))
  }

  async setNrMmuPages(pages: number): Promise<void> {
    await this.rpc.invoke('vmSetNrMmuPages', { handle: this.handle, value: num(pages, 'pages') }, 'done')
  }

  async createVcpu(id: number): Promise<Vcpu> {
    const r = await this.rpc.invoke('vmCreateVcpu', { handle: this.handle, value: num(id, 'id') }, 'vcpu')
    return new RemoteVcpu(this.rpc, r.handle, r.id, r.fd)
  }
}

class RemoteGuestMemfd extends RemoteObject implements GuestMemfd {
  constructor(rpc: Rpc, handle: string, readonly fd: number, readonly flags: bigint) {
    super(rpc, handle)
  }

  async stat(): Promise<GuestMemfdStat> {
    return fromStat(await this.rpc.invoke('gmemStat', { handle: this.handle }, 'stat'))
  }

  async read(length: number): Promise<Uint8Array> {
    return bytesFrom(await this.rpc.invoke('gmemRead', { handle: this.handle, value: num(length, 'length') }, 'data'))
  }

  async write(data: Uint8Array): Promise<number> {
    return this.rpc.invoke('gmemWrite', { handle: this.handle, data: bytesArg(data, 'data') }, 'number')
  }

  async pread(length: number, offset: U64In): Promise<Uint8Array> {
    const req = { handle: this.handle, length: num(length, 'length'), offset: toInt(offset, 'offset') }
    return bytesFrom(await this.rpc.invoke('gmemPread', req, 'data'))
  }

  async pwrite(data: Uint8Array, offset: U64In): Promise<number> {
    return this.rpc.invoke('gmemPwrite', { handle: this.handle, data: bytesArg(data, 'data'), offset: toInt(offset, 'offset') }, 'number')
  }

  async fallocate(mode: number, offset: U64In, length: U64In): Promise<void> {
    const req = { handle: this.handle, mode: num(mode, 'mode'), offset: toInt(offset, 'offset'), length: toInt(length, 'length') }
    await this.rpc.invoke('gmemFallocate', req, 'done')
  }

  async mmap(opts: { length: U64In; offset?: U64In; shared?: boolean; align?: U64In }): Promise<HostMapping> {
    const req = {
      handle: this.handle, length: toInt(opts.length, 'length'), offset: toOptInt(opts.offset, 'offset'), shared: opts.shared,
      align: toOptInt(opts.align, 'align'),
    }
    return mapping(this.rpc, await this.rpc.invoke('gmemMmap', req, 'mapping'))
  }
}

class RemoteVcpu extends RemoteObject implements Vcpu {
  constructor(rpc: Rpc, handle: string, readonly id: number, readonly fd: number) {
    super(rpc, handle)
  }

  async loadProgram(program: GuestProgram): Promise<void> {
    await this.rpc.invoke('vcpuLoadProgram', { handle: this.handle, steps: toProgram(program) }, 'done')
  }

  /**
   * KVM_RUN on the agent. The call's deadline covers the run's own timeout plus the kick's grace, so a
   * vCPU that overruns comes back as VcpuTimeout (the agent kicks it), not as a lost call.
   */
  async run(opts: RunOptions = {}): Promise<VcpuExit> {
    const msg = toRunOptions(opts)
    const deadline = (opts.timeoutMs ?? this.rpc.deadlineMs) + RUN_DEADLINE_MARGIN_MS + 2000
    return fromExit(await this.rpc.invoke('vcpuRun', { handle: this.handle, ...msg }, 'exit', deadline))
  }

  async kick(): Promise<void> {
    await this.rpc.invoke('vcpuKick', { handle: this.handle }, 'done')
  }

  async preFaultMemory(range: { gpa: U64In; size: U64In; flags?: U64In }): Promise<PreFaultResult> {
    const req = { handle: this.handle, gpa: toInt(range.gpa, 'gpa'), size: toInt(range.size, 'size'), flags: toOptInt(range.flags, 'flags') }
    return fromPreFault(await this.rpc.invoke('vcpuPreFaultMemory', req, 'preFault'))
  }

  async getRip(): Promise<bigint> {
    return u64From(await this.rpc.invoke('vcpuGetRip', { handle: this.handle }, 'u64'), 'rip')
  }

  async programStep(): Promise<number | 'halt' | null> {
    return fromProgramStep(await this.rpc.invoke('vcpuProgramStep', { handle: this.handle }, 'step'))
  }
}

class RemoteBitmap extends RemoteObject implements UserfaultBitmap {
  constructor(rpc: Rpc, handle: string, readonly addr: bigint, readonly npages: number) {
    super(rpc, handle)
  }

  async set(n: number): Promise<void> {
    await this.rpc.invoke('bitmapSet', { handle: this.handle, value: num(n, 'n') }, 'done')
  }

  async clear(n: number): Promise<void> {
    await this.rpc.invoke('bitmapClear', { handle: this.handle, value: num(n, 'n') }, 'done')
  }

  async test(n: number): Promise<boolean> {
    return this.rpc.invoke('bitmapTest', { handle: this.handle, value: num(n, 'n') }, 'flag')
  }

  async fill(value: boolean): Promise<void> {
    await this.rpc.invoke('bitmapFill', { handle: this.handle, value: Boolean(value) }, 'done')
  }

  async words(): Promise<BigUint64Array> {
    return fromWords(await this.rpc.invoke('bitmapWords', { handle: this.handle }, 'words'))
  }
}

class RemoteUffd extends RemoteObject implements Uffd {
  constructor(rpc: Rpc, handle: string, readonly fd: number) {
    super(rpc, handle)
  }

  async api(features?: U64In): Promise<{ features: bigint; ioctls: bigint }> {
    const r = await this.rpc.invoke('uffdApi', { handle: this.handle, features: toOptInt(features, 'features') }, 'uffdApi')
    return { features: u64From(r.features, 'features'), ioctls: u64From(r.ioctls, 'ioctls') }
  }

  async register(range: { start: U64In; len: U64In }, mode: number): Promise<{ ioctls: bigint }> {
    const req = { handle: this.handle, ...this.range(range), mode: num(mode, 'mode') }
    return { ioctls: u64From(await this.rpc.invoke('uffdRegister', req, 'u64'), 'ioctls') }
  }

  async unregister(range: { start: U64In; len: U64In }): Promise<void> {
    await this.rpc.invoke('uffdUnregister', { handle: this.handle, ...this.range(range) }, 'done')
  }

  async copy(op: { dst: U64In; data: Uint8Array; mode?: number }): Promise<bigint> {
    const req = { handle: this.handle, dst: toInt(op.dst, 'dst'), data: bytesArg(op.data, 'data'), mode: optNum(op.mode, 'mode') }
    return u64From(await this.rpc.invoke('uffdCopy', req, 'u64'), 'copy')
  }

  async zeropage(op: { start: U64In; len: U64In; mode?: number }): Promise<bigint> {
    const req = { handle: this.handle, ...this.range(op), mode: optNum(op.mode, 'mode') }
    return u64From(await this.rpc.invoke('uffdZeropage', req, 'u64'), 'zeropage')
  }

  async continue(op: { start: U64In; len: U64In; mode?: number }): Promise<bigint> {
    const req = { handle: this.handle, ...this.range(op), mode: optNum(op.mode, 'mode') }
    return u64From(await this.rpc.invoke('uffdContinue', req, 'u64'), 'continue')
  }

  async wake(range: { start: U64In; len: U64In }): Promise<void> {
    await this.rpc.invoke('uffdWake', { handle: this.handle, ...this.range(range) }, 'done')
  }

  async readEvents(max?: number): Promise<UffdEvent[]> {
    return fromUffdEvents(await this.rpc.invoke('uffdReadEvents', { handle: this.handle, value: optNum(max, 'max') }, 'events'))
  }

  private range(r: { start: U64In; len: U64In }) {
    return { start: toInt(r.start, 'start'), len: toInt(r.len, 'len') }
  }
}
