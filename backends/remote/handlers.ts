// The agent's side of each contract call: decode the request, find the session's object by its handle,
// call the hosted backend, encode what it answered. One entry per member of kvmconf.proto's Call.
//
// A handler returns its Reply value; what the hosted backend throws is encoded by the agent as the
// Reply's Failure (agent.ts), and an AgentRefusal or a MalformedMessage becomes the call's Refusal.

import type {
  Backend, Backing, GuestMemfd, HostMapping, Uffd, U64In, UserfaultBitmap, Vcpu, Vm,
} from '../../harness/backend.ts'
import { KvmError } from '../../harness/errors.ts'
import { DEFAULT_PER_VCPU_MEM_SIZE } from '../../harness/kvm-util/memstress.ts'
import {
  fromInt, fromIntList, fromOptInt, fromRegion, toLimits, toMismatch, toStat, toUffdEvents, toWords, u64Out,
} from './convert.ts'
import { fromDemandPagingConfig, toDemandPagingResult, type DemandPagingConfigMsg } from './convert-demand-paging.ts'
import { fromProgram, fromRunOptions, toExit, toPreFault, toProgramStep } from './convert-vcpu.ts'
import { RUN_DEADLINE_MARGIN_MS, type Call, type GuestStepMsg, type IntListMsg, type IntMsg, type RegionMsg, type ReplyMsg } from './protocol.ts'
import type { Session } from './session.ts'

/** What a handler knows about its call beyond the request. */
export interface CallContext {
  /** When the client stops waiting (ms since the epoch), Infinity without a deadline. */
  deadline: number
  /** Runs `f` if the client cancels the call (or its connection goes); returns a function that stops watching. */
  onCancel(f: () => void): () => void
}

type Handler = (s: Session, req: never, ctx: CallContext) => Promise<Omit<ReplyMsg, 'result'>>

interface H { handle: string }
interface N extends H { value?: number | undefined }
interface Range extends H { start: IntMsg | null; len: IntMsg | null; mode?: number | undefined }

const done = { done: {} }

/** A size argument as the cost it will be charged; one the backend will refuse costs nothing. */
function bytesOf(v: U64In): bigint {
  if (typeof v === 'bigint') return v > 0n ? v : 0n
  return Number.isSafeInteger(v) && v > 0 ? BigInt(v) : 0n
}

function mappingReply(handle: string, m: HostMapping): Omit<ReplyMsg, 'result'> {
  return {
    mapping: {
      handle, addr: u64Out(m.addr, 'addr'), size: u64Out(m.size, 'size'), backing: m.backing,
      ...(m.fd === null ? {} : { fd: m.fd }),
    },
  }
}

const range = (r: Range) => ({ start: fromInt(r.start, 'start'), len: fromInt(r.len, 'len') })

function define<Q>(f: (s: Session, req: Q, ctx: CallContext) => Promise<Omit<ReplyMsg, 'result'>>): Handler {
  return f as Handler
}

export const HANDLERS: Record<Call, Handler> = {
  // ---- Backend
  getApiVersion: define(async (s) => ({ number: await s.backend.getApiVersion() })),
  checkExtension: define<H & { cap: number }>(async (s, r) => {
    const target: Pick<Backend, 'checkExtension'> = r.handle === '0' ? s.backend : s.get<Vm>(r.handle, 'vm')
    return { number: await target.checkExtension(r.cap) }
  }),
  createVm: define<{ type?: number | undefined }>(async (s, r) => {
    const { handle, object: vm } = await s.create('vm', { vms: 1 }, () => s.backend.createVm(r.type === undefined ? {} : { type: r.type }))
    return { vm: { handle, fd: vm.fd, type: vm.type } }
  }),
  mmap: define<{ size: IntMsg | null; backing: string; noreserve?: boolean | undefined }>(async (s, r) => {
    const size = fromInt(r.size, 'size')
    const opts = { size, backing: r.backing as Backing, ...(r.noreserve === undefined ? {} : { noreserve: r.noreserve }) }
    const { handle, object } = await s.create('mapping', { memoryBytes: bytesOf(size) }, () => s.backend.mmap(opts))
    return mappingReply(handle, object)
  }),
  createUserfaultBitmap: define<N>(async (s, r) => {
    const npages = r.value as number
    const bytes = Number.isSafeInteger(npages) && npages > 0 ? BigInt(Math.ceil(npages / 64) * 8) : 0n
    const { handle, object } = await s.create('bitmap', { memoryBytes: bytes }, () => s.backend.createUserfaultBitmap(npages))
    return { bitmap: { handle, addr: u64Out(object.addr, 'addr'), npages: object.npages } }
  }),
  openUffd: define<{ via: string; flags?: number | undefined }>(async (s, r) => {
    const opts = { via: r.via as 'syscall' | 'dev', ...(r.flags === undefined ? {} : { flags: r.flags }) }
    const { handle, object } = await s.create('uffd', {}, () => s.backend.openUffd(opts))
    return { uffd: { handle, fd: object.fd } }
  }),
  usage: define(async (s) => ({ usage: { limits: toLimits(s.limits), used: toLimits(s.usage()) } })),
  kernelLogStart: define<{ value: string }>(async (s, r) => {
    s.kernelLog().start(r.value)
    return { done: {} }
  }),
  kernelLogFinish: define<{ value: string }>(async (s, r) => {
    const log = s.kernelLog().finish(r.value)
    return { kernelLog: { lines: log.lines, warnings: log.warnings, taintBefore: String(log.taintBefore), taintAfter: String(log.taintAfter) } }
  }),
  runDemandPaging: define<DemandPagingConfigMsg>(async (s, r) => {
    const config = fromDemandPagingConfig(r)
    if (s.backend.runDemandPaging === undefined) {
      throw new KvmError('ENOSYS', 'runDemandPaging', `the ${s.backend.name} backend does not list 'demand-paging' in info().features`)
    }
    const run = s.backend.runDemandPaging.bind(s.backend)
    // The run's VM, vCPUs and test region count against the limits while it runs (upstream's defaults:
    // one vCPU, 1 GiB each); a config the backend will refuse costs nothing.
    const vcpus = Number.isSafeInteger(config.vcpus) && (config.vcpus as number) > 0 ? (config.vcpus as number) : 1
    const perVcpu = config.vcpuMemoryBytes === undefined ? DEFAULT_PER_VCPU_MEM_SIZE : bytesOf(config.vcpuMemoryBytes)
    const cost = { vms: 1, vcpus, memoryBytes: BigInt(vcpus) * BigInt(perVcpu) }
    return { demandPaging: toDemandPagingResult(await s.within(cost, () => run(config))) }
  }),
  close: define<H>(async (s, r) => {
    await s.close(r.handle)
    return done
  }),

  // ---- HostMapping
  mappingRead: define<H & { offset: IntMsg | null; length: number }>(async (s, r) =>
    ({ data: await s.get<HostMapping>(r.handle, 'mapping').read(fromInt(r.offset, 'offset'), r.length) })),
  mappingWrite: define<H & { offset: IntMsg | null; data: Uint8Array }>(async (s, r) => {
    await s.get<HostMapping>(r.handle, 'mapping').write(fromInt(r.offset, 'offset'), r.data)
    return done
  }),
  mappingFill: define<H & { offset: IntMsg | null; length: IntMsg | null; byte: number }>(async (s, r) => {
    await s.get<HostMapping>(r.handle, 'mapping').fill(fromInt(r.offset, 'offset'), fromInt(r.length, 'length'), r.byte)
    return done
  }),
  mappingFindMismatch: define<H & { offset: IntMsg | null; length: IntMsg | null; byte: number }>(async (s, r) => {
    const at = await s.get<HostMapping>(r.handle, 'mapping').findMismatch(fromInt(r.offset, 'offset'), fromInt(r.length, 'length'), r.byte)
    return { mismatch: toMismatch(at) }
  }),
  mappingAlias: define<H>(async (s, r) => {
    const source = s.get<HostMapping>(r.handle, 'mapping')
    const { handle, object } = await s.create('mapping', { memoryBytes: source.size }, () => source.alias())
    return mappingReply(handle, object)
  }),
  mappingMadvise: define<H & { advice: number; offset: IntMsg | null; length: IntMsg | null }>(async (s, r) => {
    await s.get<HostMapping>(r.handle, 'mapping').madvise(r.advice, fromOptInt(r.offset, 'offset'), fromOptInt(r.length, 'length'))
    return done
  }),

  // ---- Vm
  vmEnableCap: define<H & { cap: number; args: IntListMsg | null; flags?: number | undefined }>(async (s, r) =>
    ({ number: await s.get<Vm>(r.handle, 'vm').enableCap(r.cap, fromIntList(r.args, 'args'), r.flags) })),
  vmSetUserMemoryRegion: define<H & { region: RegionMsg | null }>(async (s, r) => {
    const { slot, flags, guestPhysAddr, memorySize, userspaceAddr } = fromRegion(r.region)
    await s.get<Vm>(r.handle, 'vm').setUserMemoryRegion({ slot, flags, guestPhysAddr, memorySize, userspaceAddr })
    return done
  }),
  vmSetUserMemoryRegion2: define<H & { region: RegionMsg | null }>(async (s, r) => {
    await s.get<Vm>(r.handle, 'vm').setUserMemoryRegion2(fromRegion(r.region))
    return done
  }),
  vmCreateGuestMemfd: define<H & { size: IntMsg | null; flags: IntMsg | null; reserved: IntListMsg | null }>(async (s, r) => {
    const vm = s.get<Vm>(r.handle, 'vm')
    const size = fromInt(r.size, 'size')
    const flags = fromOptInt(r.flags, 'flags')
    const reserved = fromIntList(r.reserved, 'reserved')
    const opts = { size, ...(flags === undefined ? {} : { flags }), ...(reserved === undefined ? {} : { reserved }) }
    const { handle, object } = await s.create('guest_memfd', { memoryBytes: bytesOf(size) }, () => vm.createGuestMemfd(opts))
    return { guestMemfd: { handle, fd: object.fd, flags: u64Out(object.flags, 'flags') } }
  }),
  vmSetMemoryAttributes: define<H & { address: IntMsg | null; size: IntMsg | null; attributes: IntMsg | null; flags: IntMsg | null }>(
    async (s, r) => {
      const flags = fromOptInt(r.flags, 'flags')
      await s.get<Vm>(r.handle, 'vm').setMemoryAttributes({
        address: fromInt(r.address, 'address'), size: fromInt(r.size, 'size'), attributes: fromInt(r.attributes, 'attributes'),
        ...(flags === undefined ? {} : { flags }),
      })
      return done
    }),
  vmGetDirtyLog: define<N>(async (s, r) => ({ data: await s.get<Vm>(r.handle, 'vm').getDirtyLog(r.value as number) })),
  vmSetNrMmuPages: define<N>(async (s, r) => {
    await s.get<Vm>(r.handle, 'vm').setNrMmuPages(r.value as number)
    return done
  }),
  vmCreateVcpu: define<N>(async (s, r) => {
    const vm = s.get<Vm>(r.handle, 'vm')
    const { handle, object } = await s.create('vcpu', { vcpus: 1 }, () => vm.createVcpu(r.value as number), r.handle)
    return { vcpu: { handle, id: object.id, fd: object.fd } }
  }),

  // ---- GuestMemfd
  gmemStat: define<H>(async (s, r) => ({ stat: toStat(await s.get<GuestMemfd>(r.handle, 'guest_memfd').stat()) })),
  gmemRead: define<N>(async (s, r) => ({ data: await s.get<GuestMemfd>(r.handle, 'guest_memfd').read(r.value as number) })),
  gmemWrite: define<H & { data: Uint8Array }>(async (s, r) => ({ number: await s.get<GuestMemfd>(r.handle, 'guest_memfd').write(r.data) })),
  gmemPread: define<H & { offset: IntMsg | null; length: number }>(async (s, r) =>
    ({ data: await s.get<GuestMemfd>(r.handle, 'guest_memfd').pread(r.length, fromInt(r.offset, 'offset')) })),
  gmemPwrite: define<H & { offset: IntMsg | null; data: Uint8Array }>(async (s, r) =>
    ({ number: await s.get<GuestMemfd>(r.handle, 'guest_memfd').pwrite(r.data, fromInt(r.offset, 'offset')) })),
  gmemFallocate: define<H & { mode: number; offset: IntMsg | null; length: IntMsg | null }>(async (s, r) => {
    await s.get<GuestMemfd>(r.handle, 'guest_memfd').fallocate(r.mode, fromInt(r.offset, 'offset'), fromInt(r.length, 'length'))
    return done
  }),
  gmemMmap: define<H & { length: IntMsg | null; offset: IntMsg | null; shared?: boolean | undefined; align: IntMsg | null }>(
    async (s, r) => {
      const gmem = s.get<GuestMemfd>(r.handle, 'guest_memfd')
      const length = fromInt(r.length, 'length')
      const offset = fromOptInt(r.offset, 'offset')
      const align = fromOptInt(r.align, 'align')
      const opts = {
        length, ...(offset === undefined ? {} : { offset }), ...(r.shared === undefined ? {} : { shared: r.shared }),
        ...(align === undefined ? {} : { align }),
      }
      const { handle, object } = await s.create('mapping', { memoryBytes: bytesOf(length) }, () => gmem.mmap(opts))
      return mappingReply(handle, object)
    }),

  // ---- Vcpu
  vcpuLoadProgram: define<H & { steps: GuestStepMsg[] }>(async (s, r) => {
    await s.get<Vcpu>(r.handle, 'vcpu').loadProgram(fromProgram(r.steps))
    return done
  }),
  vcpuRun: define<H & { timeoutMs?: number | undefined; mmioData?: Uint8Array; ioData?: Uint8Array }>(async (s, r, ctx) => {
    const vcpu = s.get<Vcpu>(r.handle, 'vcpu')
    const opts = fromRunOptions(r)
    // A vCPU never outlives its call: kick it before the client's deadline, and when the call goes.
    const left = ctx.deadline - Date.now() - RUN_DEADLINE_MARGIN_MS
    if (Number.isFinite(left)) opts.timeoutMs = Math.max(0, Math.min(opts.timeoutMs ?? left, left))
    const stop = ctx.onCancel(() => void vcpu.kick().catch(() => {}))
    try {
      return { exit: toExit(await vcpu.run(opts)) }
    } finally {
      stop()
    }
  }),
  vcpuKick: define<H>(async (s, r) => {
    await s.get<Vcpu>(r.handle, 'vcpu').kick()
    return done
  }),
  vcpuPreFaultMemory: define<H & { gpa: IntMsg | null; size: IntMsg | null; flags: IntMsg | null }>(async (s, r) => {
    const flags = fromOptInt(r.flags, 'flags')
    const result = await s.get<Vcpu>(r.handle, 'vcpu').preFaultMemory({
      gpa: fromInt(r.gpa, 'gpa'), size: fromInt(r.size, 'size'), ...(flags === undefined ? {} : { flags }),
    })
    return { preFault: toPreFault(result) }
  }),
  vcpuGetRip: define<H>(async (s, r) => ({ u64: u64Out(await s.get<Vcpu>(r.handle, 'vcpu').getRip(), 'rip') })),
  vcpuProgramStep: define<H>(async (s, r) => ({ step: toProgramStep(await s.get<Vcpu>(r.handle, 'vcpu').programStep()) })),

  // ---- UserfaultBitmap
  bitmapSet: define<N>(async (s, r) => {
    await s.get<UserfaultBitmap>(r.handle, 'bitmap').set(r.value as number)
    return done
  }),
  bitmapClear: define<N>(async (s, r) => {
    await s.get<UserfaultBitmap>(r.handle, 'bitmap').clear(r.value as number)
    return done
  }),
  bitmapTest: define<N>(async (s, r) => ({ flag: await s.get<UserfaultBitmap>(r.handle, 'bitmap').test(r.value as number) })),
  bitmapFill: define<H & { value: boolean }>(async (s, r) => {
    await s.get<UserfaultBitmap>(r.handle, 'bitmap').fill(r.value)
    return done
  }),
  bitmapWords: define<H>(async (s, r) => ({ words: toWords(await s.get<UserfaultBitmap>(r.handle, 'bitmap').words()) })),

  // ---- Uffd
  uffdApi: define<H & { features: IntMsg | null }>(async (s, r) => {
    const api = await s.get<Uffd>(r.handle, 'uffd').api(fromOptInt(r.features, 'features'))
    return { uffdApi: { features: u64Out(api.features, 'features'), ioctls: u64Out(api.ioctls, 'ioctls') } }
  }),
  uffdRegister: define<Range>(async (s, r) => {
    const { ioctls } = await s.get<Uffd>(r.handle, 'uffd').register(range(r), r.mode as number)
    return { u64: u64Out(ioctls, 'ioctls') }
  }),
  uffdUnregister: define<Range>(async (s, r) => {
    await s.get<Uffd>(r.handle, 'uffd').unregister(range(r))
    return done
  }),
  uffdCopy: define<H & { dst: IntMsg | null; data: Uint8Array; mode?: number | undefined }>(async (s, r) => {
    const op = { dst: fromInt(r.dst, 'dst'), data: r.data, ...(r.mode === undefined ? {} : { mode: r.mode }) }
    return { u64: u64Out(await s.get<Uffd>(r.handle, 'uffd').copy(op), 'copy') }
  }),
  uffdZeropage: define<Range>(async (s, r) => {
    const op = { ...range(r), ...(r.mode === undefined ? {} : { mode: r.mode }) }
    return { u64: u64Out(await s.get<Uffd>(r.handle, 'uffd').zeropage(op), 'zeropage') }
  }),
  uffdContinue: define<Range>(async (s, r) => {
    const op = { ...range(r), ...(r.mode === undefined ? {} : { mode: r.mode }) }
    return { u64: u64Out(await s.get<Uffd>(r.handle, 'uffd').continue(op), 'continue') }
  }),
  uffdWake: define<Range>(async (s, r) => {
    await s.get<Uffd>(r.handle, 'uffd').wake(range(r))
    return done
  }),
  uffdReadEvents: define<N>(async (s, r) => ({ events: toUffdEvents(await s.get<Uffd>(r.handle, 'uffd').readEvents(r.value)) })),
}
