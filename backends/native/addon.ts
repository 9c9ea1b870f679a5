// The addon's raw JavaScript API (src/addon.cc) and the conversion of its errors at this edge.
//
// Handles are numbers that index C++ tables; a closed or unknown handle fails with EBADF. u64 values
// cross as bigints, u32/int values as integer numbers. A failed kernel call throws an Error named
// NativeErrnoError with numeric `errno` and string `op`; a caught SIGBUS/SIGSEGV rejects with
// NativeHostFault. `native()`/`nativeAsync()` turn those into KvmError and HostFault.

import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import { HostFault, KvmError } from '../../harness/errors.ts'

export type Handle = number

/** One KVM_RUN's outcome as the addon reports it (native.ts shapes it into VcpuExit). */
export type RawExit = { exitReason: number } & (
  | { kind: 'io'; port: number; size: number; direction: 'in' | 'out'; count: number; data: Uint8Array }
  | { kind: 'mmio'; physAddr: bigint; len: number; isWrite: boolean; data: Uint8Array }
  | { kind: 'hlt' | 'shutdown' | 'intr' | 'other' }
  | { kind: 'internal_error'; suberror: number; data: bigint[] }
  | { kind: 'memory_fault'; errno: number; flags: bigint; gpa: bigint; size: bigint }
  | { kind: 'fail_entry'; reason: bigint }
)

export interface RawPreFault {
  ret: number
  errno: number
  gpa: bigint
  size: bigint
}

/** demandPagingRun()'s spec (src/addon.cc checks every field; demand-paging.ts builds it). */
export interface RawDemandPagingSpec {
  regionGpa: bigint
  hostPageSize: number
  /** demand_paging_size: what one resolution covers. */
  unitBytes: number
  guestPageSize: number
  /** The GUEST_SYNC port: the run of a vCPU ends at its `out` of 4 bytes there. */
  syncPort: number
  /** Each vCPU: its id, struct kvm_regs (144 bytes) and kvm_sregs (312 bytes), the host CPU to pin to or -1. */
  vcpus: { id: number; regs: Uint8Array; sregs: Uint8Array; cpu: number }[]
  mainCpu: number
  uffdMode: 'MISSING' | 'MINOR' | null
  uffdRanges: { gpa: bigint; len: bigint }[]
  registerMode: bigint
  expectedIoctl: bigint
  readersPerUffd: number
  delayUs: number
  /** After a write pass: the u64 every guest page should start with; null skips the check. */
  writeValue: bigint | null
  timeoutMs: number
}

/** demandPagingRun()'s outcome; counts are numbers (exact below 2^53). */
export interface RawDemandPagingOutcome {
  error: { errno: number; op: string } | null
  timedOut: boolean
  elapsedNs: bigint
  vcpus: { synced: boolean; elapsedNs: bigint; exit: RawExit | null; userfaultExits: number }[]
  uffd: {
    uffds: number; faults: number; resolved: number; eexist: number; wakes: number
    units: number; unitsOnce: number; unitsMore: number; unitsNever: number
  }
  kvmUserfault: {
    exits: number; pagesWithExit: number; pagesWithMoreExits: number; violationCount: number
    violations: { vcpu: number; gpa: bigint; size: bigint; flags: bigint; why: string }[]
  }
  pagesWithoutWrite: number | null
}

export interface NativeAddon {
  pageSize(): number
  counts(): Record<'systems' | 'vms' | 'vcpus' | 'guestMemfds' | 'mappings' | 'bitmaps' | 'uffds' | 'inflight', number>

  systemOpen(): Handle
  systemFd(sys: Handle): number
  getApiVersion(sys: Handle): number
  checkExtension(sys: Handle, cap: number): number
  getVcpuMmapSize(sys: Handle): number
  createVm(sys: Handle, type: number): Handle
  systemClose(sys: Handle): void

  vmFd(vm: Handle): number
  vmCheckExtension(vm: Handle, cap: number): number
  vmEnableCap(vm: Handle, cap: number, flags: number, args: BigUint64Array): number
  vmSetUserMemoryRegion(vm: Handle, slot: number, flags: number, gpa: bigint, size: bigint, hva: bigint): void
  vmSetUserMemoryRegion2(
    vm: Handle, slot: number, flags: number, gpa: bigint, size: bigint, hva: bigint,
    guestMemfdOffset: bigint, guestMemfd: number, pad1: number, userfaultBitmap: bigint, pad2: BigUint64Array,
  ): void
  vmCreateGuestMemfd(vm: Handle, size: bigint, flags: bigint, reserved: BigUint64Array): Handle
  vmSetMemoryAttributes(vm: Handle, address: bigint, size: bigint, attributes: bigint, flags: bigint): void
  vmGetDirtyLog(vm: Handle, slot: number, npages: number): Uint8Array
  vmSetNrMmuPages(vm: Handle, pages: bigint): void
  vmCreateVcpu(vm: Handle, id: number): Handle
  vmClose(vm: Handle): void

  gmemFd(g: Handle): number
  gmemStat(g: Handle): { size: bigint; blockSize: number; ino: bigint }
  gmemRead(g: Handle, length: number): Uint8Array
  gmemWrite(g: Handle, data: Uint8Array): number
  gmemPread(g: Handle, length: number, offset: bigint): Uint8Array
  gmemPwrite(g: Handle, data: Uint8Array, offset: bigint): number
  gmemFallocate(g: Handle, mode: number, offset: bigint, length: bigint): void
  gmemMmap(g: Handle, length: bigint, offset: bigint, shared: boolean, align: bigint): Handle
  gmemClose(g: Handle): void

  mappingCreate(size: bigint, backing: string, noreserve: boolean): Handle
  mappingInfo(m: Handle): { addr: bigint; size: bigint; backing: string; fd: number | null }
  mappingAlias(m: Handle): Handle
  mappingRead(m: Handle, offset: bigint, length: number): Promise<Uint8Array>
  mappingWrite(m: Handle, offset: bigint, data: Uint8Array): Promise<void>
  mappingFill(m: Handle, offset: bigint, length: bigint, byte: number): Promise<void>
  mappingFindMismatch(m: Handle, offset: bigint, length: bigint, byte: number): Promise<bigint>
  mappingMadvise(m: Handle, advice: number, offset: bigint, length: bigint): Promise<void>
  mappingClose(m: Handle): void

  bitmapCreate(npages: number): Handle
  bitmapAddr(b: Handle): bigint
  bitmapSet(b: Handle, n: number): void
  bitmapClear(b: Handle, n: number): void
  bitmapTest(b: Handle, n: number): boolean
  bitmapFill(b: Handle, value: boolean): void
  bitmapWords(b: Handle): BigUint64Array
  bitmapClose(b: Handle): void

  uffdOpen(via: 'syscall' | 'dev', flags: number): Handle
  uffdFd(u: Handle): number
  uffdApi(u: Handle, features: bigint): { api: bigint; features: bigint; ioctls: bigint }
  uffdRegister(u: Handle, start: bigint, len: bigint, mode: bigint): bigint
  uffdUnregister(u: Handle, start: bigint, len: bigint): void
  uffdCopy(u: Handle, dst: bigint, data: Uint8Array, mode: bigint): bigint
  uffdZeropage(u: Handle, start: bigint, len: bigint, mode: bigint): bigint
  uffdContinue(u: Handle, start: bigint, len: bigint, mode: bigint): bigint
  uffdWake(u: Handle, start: bigint, len: bigint): void
  uffdReadEvents(u: Handle, max: number): { event: number; address: bigint; flags: bigint }[]
  uffdClose(u: Handle): void

  vcpuFd(v: Handle): number
  vcpuRun(v: Handle, mmioData?: Uint8Array, ioData?: Uint8Array): Promise<RawExit>
  vcpuKick(v: Handle): void
  vcpuPreFaultMemory(v: Handle, gpa: bigint, size: bigint, flags: bigint): Promise<RawPreFault>
  vcpuGetRegs(v: Handle): Uint8Array
  vcpuSetRegs(v: Handle, regs: Uint8Array): void
  vcpuGetSregs(v: Handle): Uint8Array
  vcpuSetSregs(v: Handle, sregs: Uint8Array): void
  vcpuClose(v: Handle): void

  /** A whole demand-paging run on the addon's threads (src/demand-paging-run.h); `bitmap` with -k. */
  demandPagingRun(vm: Handle, region: Handle, bitmap: Handle | null, spec: RawDemandPagingSpec): Promise<RawDemandPagingOutcome>
}

const here = path.dirname(fileURLToPath(import.meta.url))

/** Where build.mjs leaves the addon and, when the build failed, why. */
export const BUILD_DIR = path.join(here, 'build')
export const ADDON_PATH = addonPathIn(BUILD_DIR)
export const BUILD_ERROR_PATH = buildErrorPathIn(BUILD_DIR)

export function addonPathIn(buildDir: string): string {
  return path.join(buildDir, 'kvmconf_native.node')
}

export function buildErrorPathIn(buildDir: string): string {
  return path.join(buildDir, 'build-error.txt')
}

/** Loads the addon (throws what `require` throws). */
export function requireAddon(file: string = ADDON_PATH): NativeAddon {
  return createRequire(import.meta.url)(file) as NativeAddon
}

/** An error from the addon converted to the harness's error values; anything else unchanged. */
export function convertError(e: unknown): unknown {
  if (typeof e !== 'object' || e === null) return e
  const o = e as { name?: unknown; errno?: unknown; op?: unknown; signal?: unknown; address?: unknown }
  if (o.name === 'NativeErrnoError' && typeof o.errno === 'number' && typeof o.op === 'string') {
    return new KvmError(o.errno, o.op)
  }
  if (o.name === 'NativeHostFault' && (o.signal === 'SIGBUS' || o.signal === 'SIGSEGV') &&
    typeof o.op === 'string' && typeof o.address === 'bigint') {
    return new HostFault(o.signal, o.op, o.address)
  }
  return e
}

/** Calls the addon synchronously, converting its errors. */
export function native<T>(call: () => T): T {
  try {
    return call()
  } catch (e) {
    throw convertError(e)
  }
}

/** Awaits an addon promise (or a synchronous throw before it), converting its errors. */
export async function nativeAsync<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call()
  } catch (e) {
    throw convertError(e)
  }
}
