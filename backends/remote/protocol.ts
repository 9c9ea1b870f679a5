// The wire: kvmconf.proto loaded at run time (@grpc/proto-loader, no generated code), its version,
// its metadata keys, and the shapes its messages take in JavaScript.
//
// The loader options fix those shapes: field names in camelCase, 64-bit integers as decimal strings
// (never a lossy number), enums as their names, bytes as Buffer, every scalar present with its default,
// an unset sub-message as null, and each oneof's chosen member named by a discriminator field.

import path from 'node:path'
import { fileURLToPath } from 'node:url'

import type { ServiceDefinition } from '@grpc/grpc-js'
import { loadSync, type Options } from '@grpc/proto-loader'

import type { DemandPagingResultMsg } from './convert-demand-paging.ts'

/** Bumped with the proto's package (`kvmconf.agent.v1`) when a peer of the old version would misread us. */
export const PROTOCOL_VERSION = 1

export const PROTO_PATH = path.join(path.dirname(fileURLToPath(import.meta.url)), 'kvmconf.proto')
export const SERVICE_NAME = 'kvmconf.agent.v1.Agent'

/** Metadata of the Session stream and of Ping: `authorization: Bearer <token>`. */
export const AUTH_HEADER = 'authorization'

export const LOADER_OPTIONS: Options = {
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
}

const loaded = loadSync(PROTO_PATH, LOADER_OPTIONS)

/** The Agent service: every method's path and (de)serialisers. */
export const AGENT_SERVICE = loaded[SERVICE_NAME] as ServiceDefinition

/**
 * How long before a VcpuRun call's deadline the agent kicks the vCPU: the hosted backend allows the kernel
 * a second to let go after a kick (native's KICK_GRACE_MS), plus time for the answer to travel back.
 */
export const RUN_DEADLINE_MARGIN_MS = 1500

/** The contract's calls: the members of Call's `request` oneof. Each is answered by a Result. */
export const CALLS = [
  'getApiVersion', 'checkExtension', 'createVm', 'mmap', 'createUserfaultBitmap', 'openUffd', 'usage', 'close',
  'mappingRead', 'mappingWrite', 'mappingFill', 'mappingFindMismatch', 'mappingAlias', 'mappingMadvise',
  'vmEnableCap', 'vmSetUserMemoryRegion', 'vmSetUserMemoryRegion2', 'vmCreateGuestMemfd', 'vmSetMemoryAttributes',
  'vmGetDirtyLog', 'vmSetNrMmuPages', 'vmCreateVcpu',
  'gmemStat', 'gmemRead', 'gmemWrite', 'gmemPread', 'gmemPwrite', 'gmemFallocate', 'gmemMmap',
  'vcpuLoadProgram', 'vcpuRun', 'vcpuKick', 'vcpuPreFaultMemory', 'vcpuGetRip', 'vcpuProgramStep',
  'bitmapSet', 'bitmapClear', 'bitmapTest', 'bitmapFill', 'bitmapWords',
  'uffdApi', 'uffdRegister', 'uffdUnregister', 'uffdCopy', 'uffdZeropage', 'uffdContinue', 'uffdWake', 'uffdReadEvents',
  'runDemandPaging',
  'kernelLogStart', 'kernelLogFinish',
] as const
export type Call = (typeof CALLS)[number]

// ---------------------------------------------------------------------------------------------------
// Message shapes. Outgoing messages set the fields they mean; incoming ones have every scalar (at its
// default when unset), null for an unset sub-message and `undefined` for an unset `optional` scalar.

/** A uint64/int64 on the wire: its decimal string. */
export type Wire64 = string

export interface IntMsg {
  number?: number
  bigint?: string
  value?: 'number' | 'bigint'
}

export interface IntListMsg {
  values: IntMsg[]
}

export interface EmptyMsg {}

export interface HandleMsg {
  handle: Wire64
}

export interface LimitsMsg {
  vms: number
  vcpus: number
  memoryBytes: Wire64
  handles: number
}

export interface BackendInfoMsg {
  kernelRelease: string
  arch: string
  pageSize: number
  profile?: string | undefined
  backings: string[]
  features: string[]
  host: string
}

export interface HelloMsg {
  protocolVersion: number
  clientVersion: string
}

/** Call: its id and deadline, and the request under its Call name (`{ id, deadlineMs, request: 'mmap', mmap: {...} }`). */
export interface CallMsg {
  id: Wire64
  deadlineMs: number
  request?: Call
  [member: string]: unknown
}

export interface RefusalMsg {
  code: string
  message: string
}

export interface ResultMsg {
  id: Wire64
  outcome?: 'reply' | 'refusal'
  reply?: ReplyMsg | null
  refusal?: RefusalMsg | null
}

export interface ClientMessageMsg {
  message?: 'hello' | 'call' | 'cancel'
  hello?: HelloMsg | null
  call?: CallMsg | null
  cancel?: { id: Wire64 } | null
}

export interface AgentMessageMsg {
  message?: 'handshake' | 'result'
  handshake?: HandshakeMsg | null
  result?: ResultMsg | null
}

export interface HandshakeMsg {
  protocolVersion: number
  agentVersion: string
  session: string
  hostedBackend: string
  info: BackendInfoMsg | null
  systemFd: number
  limits: LimitsMsg | null
  maxMessageBytes: number
}

export interface UsageMsg {
  limits: LimitsMsg | null
  used: LimitsMsg | null
}

export interface RegionMsg {
  slot: number
  flags: number
  guestPhysAddr: IntMsg | null
  memorySize: IntMsg | null
  userspaceAddr: IntMsg | null
  guestMemfdOffset?: IntMsg | null
  guestMemfd?: number | undefined
  pad1?: number | undefined
  userfaultBitmap?: IntMsg | null
  pad2?: IntListMsg | null
}

export type GuestStepMsg =
  | { op?: 'write'; write: { gva: IntMsg | null; value: IntMsg | null; width?: number | undefined; expectFault?: boolean | undefined } }
  | { op?: 'read'; read: { gva: IntMsg | null; width?: number | undefined; expectFault?: boolean | undefined } }
  | { op?: 'spinWhileEq'; spinWhileEq: { gva: IntMsg | null; value: IntMsg | null } }
  | { op?: 'signal'; signal: { port: number; value: IntMsg | null } }
  | { op?: 'touchPages'; touchPages: { gva: IntMsg | null; pages: number; stride: number; write: boolean; value: IntMsg | null } }
  | { op?: 'fill'; fill: { gva: IntMsg | null; length: number; byte: number } }
  | { op?: 'check'; check: { gva: IntMsg | null; length: number; byte: number } }
  | { op?: 'lidt'; lidt: { base: IntMsg | null; limit: number } }
  | { op?: 'jump'; jump: { to: number } }
  | { op?: 'hlt'; hlt: EmptyMsg }

export interface RunMsg {
  timeoutMs?: number | undefined
  mmioData?: Uint8Array | undefined
  ioData?: Uint8Array | undefined
}

export type VcpuExitMsg =
  | { kind?: 'io'; io: { port: number; size: number; direction: 'IO_DIRECTION_IN' | 'IO_DIRECTION_OUT'; count: number; data: Uint8Array } }
  | { kind?: 'mmio'; mmio: { physAddr: Wire64; len: number; isWrite: boolean; data: Uint8Array } }
  | { kind?: 'hlt'; hlt: EmptyMsg }
  | { kind?: 'shutdown'; shutdown: EmptyMsg }
  | { kind?: 'internalError'; internalError: { suberror: number; data: Wire64[] } }
  | { kind?: 'memoryFault'; memoryFault: { errno: string; flags: Wire64; gpa: Wire64; size: Wire64 } }
  | { kind?: 'intr'; intr: EmptyMsg }
  | { kind?: 'failEntry'; failEntry: { reason: Wire64 } }
  | { kind?: 'other'; other: { exitReason: number } }

export type FailureMsg =
  | { error?: 'kvmError'; kvmError: { code: string; errno: number; op: string; message: string } }
  | { error?: 'hostFault'; hostFault: { code: string; op: string; address: Wire64; message: string } }
  | { error?: 'vcpuTimeout'; vcpuTimeout: { timeoutMs: number; message: string } }
  | { error?: 'plain'; plain: { name: string; message: string } }
  | { error?: 'demandPagingTimeout'; demandPagingTimeout: { timeoutMs: number; vcpusSynced: number; vcpus: number; message: string } }
  | { error?: 'kvmUserfaultUnsupported'; kvmUserfaultUnsupported: { code: string; op: string; message: string } }

export interface PreFaultMsg {
  ok: boolean
  code: string
  errno: number
  gpa: Wire64
  size: Wire64
}

export type ProgramStepMsg = { at?: 'index'; index: number } | { at?: 'halt'; halt: EmptyMsg } | { at?: 'outside'; outside: EmptyMsg }

export type UffdEventMsg =
  | { kind?: 'pagefault'; pagefault: { address: Wire64; flags: Wire64 } }
  | { kind?: 'other'; other: number }

export interface StatMsg {
  size: Wire64
  blockSize: number
  ino: Wire64
}

/** Reply: one member of its `result` oneof. */
export interface ReplyMsg {
  result?: string
  failure?: FailureMsg | null
  done?: EmptyMsg | null
  number?: number
  u64?: Wire64
  flag?: boolean
  data?: Uint8Array
  words?: { values: Wire64[] } | null
  vm?: { handle: Wire64; fd: number; type: number } | null
  mapping?: { handle: Wire64; addr: Wire64; size: Wire64; backing: string; fd?: number | undefined } | null
  guestMemfd?: { handle: Wire64; fd: number; flags: Wire64 } | null
  vcpu?: { handle: Wire64; id: number; fd: number } | null
  bitmap?: { handle: Wire64; addr: Wire64; npages: number } | null
  uffd?: { handle: Wire64; fd: number } | null
  stat?: StatMsg | null
  exit?: VcpuExitMsg | null
  preFault?: PreFaultMsg | null
  step?: ProgramStepMsg | null
  mismatch?: { offset?: Wire64 | undefined } | null
  uffdApi?: { features: Wire64; ioctls: Wire64 } | null
  events?: { events: UffdEventMsg[] } | null
  usage?: UsageMsg | null
  demandPaging?: DemandPagingResultMsg | null
  kernelLog?: KernelLogMsg | null
}

export interface KernelLogMsg {
  lines: string[]
  warnings: string[]
  taintBefore: Wire64
  taintAfter: Wire64
}

/** The members of Reply's `result` oneof. */
export type ReplyKind = Exclude<keyof ReplyMsg, 'result'>
