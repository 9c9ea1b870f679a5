// Differential testing: sequences of memslot and guest_memfd calls described symbolically, so the same
// sequence can be replayed on two backends whose fd numbers and host addresses differ.
//
// An op refers to earlier handles by index ("the 2nd VM created", "the 1st guest_memfd") and to fds and
// host addresses by role ("the VM fd of VM 0", "mapping 1 + 4 KiB", "a non-canonical address"); each
// backend resolves the roles to its own numbers. The outcome of every op is a short string (`ok`,
// `ok 3` for a value, or the errno name), and two backends agree when their outcome lists are equal.

import fc from 'fast-check'
import type { Backend, GuestMemfd, HostMapping, Vm } from '../../harness/backend.ts'
import { HostFault, KvmError } from '../../harness/errors.ts'
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE } from '../../harness/uapi/fs.ts'
import { KVM_CAP_DISABLE_QUIRKS2, KVM_CAP_NAMES } from '../../harness/uapi/kvm.ts'

const MiB = 0x100000n
const U64_MAX = (1n << 64n) - 1n

/** A file descriptor named by its role, resolved per backend. */
export type FdRef =
  | { fd: 'gmem'; index: number }
  | { fd: 'vm'; index: number }
  | { fd: 'system' }
  | { fd: 'memfd' }
  | { fd: 'raw'; value: number }

/** A host address named by its role: inside one of the pre-made mappings, or a raw value. */
export type HvaRef = { hva: 'mapping'; index: number; offset: bigint } | { hva: 'raw'; value: bigint }

export type Op =
  | { op: 'createVm'; type: number }
  | { op: 'closeVm'; vm: number }
  | { op: 'checkExtension'; vm: number | null; cap: number }
  | { op: 'enableCap'; vm: number; cap: number; arg0: bigint; flags: number }
  | {
      op: 'setRegion'
      v2: boolean
      vm: number
      slot: number
      flags: number
      gpa: bigint
      size: bigint
      hva: HvaRef
      gmem: FdRef
      gmemOffset: bigint
    }
  | { op: 'createGmem'; vm: number; size: bigint; flags: bigint }
  | { op: 'closeGmem'; gmem: number }
  | { op: 'fallocate'; gmem: number; mode: number; offset: bigint; length: bigint }
  | { op: 'getDirtyLog'; vm: number; slot: number }
  | { op: 'setMemoryAttributes'; vm: number; address: bigint; size: bigint; attributes: bigint }

/** What a backend brings to a replay: its handles so far and the mappings made up front. */
interface Replay {
  kvm: Backend
  vms: (Vm | undefined)[]
  gmems: (GuestMemfd | undefined)[]
  mappings: HostMapping[]
  memfd: HostMapping
}

export const MAPPINGS = 2
export const MAPPING_SIZE = 8n * MiB

function resolveFd(r: Replay, ref: FdRef): number {
  switch (ref.fd) {
    case 'gmem':
      return r.gmems[ref.index]?.fd ?? 0x7fffffff
    case 'vm':
      return r.vms[ref.index]?.fd ?? 0x7fffffff
    case 'system':
      return r.kvm.systemFd
    case 'memfd':
      return r.memfd.fd ?? 0x7fffffff
    case 'raw':
      return ref.value
  }
}

function resolveHva(r: Replay, ref: HvaRef): bigint {
  if (ref.hva === 'raw') return ref.value
  const m = r.mappings[ref.index % r.mappings.length]
  return (m?.addr ?? 0n) + ref.offset
}

/** The outcome of one call: `ok`, `ok <value>`, the errno name, or a host fault. */
async function outcome(call: () => Promise<unknown>): Promise<string> {
  try {
    const value = await call()
    return typeof value === 'number' ? `ok ${value}` : 'ok'
  } catch (e) {
    if (KvmError.is(e)) return e.code
    if (HostFault.is(e)) return e.code
    throw e
  }
}

/** A handle the sequence refers to but never created, or already closed: skipped identically on both. */
const NO_SUCH_HANDLE = 'no such handle'

async function step(r: Replay, o: Op): Promise<string> {
  switch (o.op) {
    case 'createVm': {
      return outcome(async () => {
        r.vms.push(await r.kvm.createVm({ type: o.type }))
      })
    }
    case 'closeVm': {
      const vm = r.vms[o.vm]
      if (!vm) return NO_SUCH_HANDLE
      r.vms[o.vm] = undefined
      return outcome(() => vm.close())
    }
    case 'checkExtension': {
      if (o.vm === null) return outcome(() => r.kvm.checkExtension(o.cap))
      const vm = r.vms[o.vm]
      return vm ? outcome(() => vm.checkExtension(o.cap)) : NO_SUCH_HANDLE
    }
    case 'enableCap': {
      const vm = r.vms[o.vm]
      return vm ? outcome(() => vm.enableCap(o.cap, [o.arg0], o.flags)) : NO_SUCH_HANDLE
    }
    case 'setRegion': {
      const vm = r.vms[o.vm]
      if (!vm) return NO_SUCH_HANDLE
      const region = {
        slot: o.slot,
        flags: o.flags,
        guestPhysAddr: o.gpa,
        memorySize: o.size,
        userspaceAddr: resolveHva(r, o.hva),
      }
      if (!o.v2) return outcome(() => vm.setUserMemoryRegion(region))
      const gmem = { guestMemfd: resolveFd(r, o.gmem), guestMemfdOffset: o.gmemOffset }
      return outcome(() => vm.setUserMemoryRegion2({ ...region, ...gmem }))
    }
    case 'createGmem': {
      const vm = r.vms[o.vm]
      if (!vm) return NO_SUCH_HANDLE
      return outcome(async () => {
        r.gmems.push(await vm.createGuestMemfd({ size: o.size, flags: o.flags }))
      })
    }
    case 'closeGmem': {
      const gmem = r.gmems[o.gmem]
      if (!gmem) return NO_SUCH_HANDLE
      r.gmems[o.gmem] = undefined
      return outcome(() => gmem.close())
    }
    case 'fallocate': {
      const gmem = r.gmems[o.gmem]
      return gmem ? outcome(() => gmem.fallocate(o.mode, o.offset, o.length)) : NO_SUCH_HANDLE
    }
    case 'getDirtyLog': {
      const vm = r.vms[o.vm]
      return vm ? outcome(async () => (await vm.getDirtyLog(o.slot)).length) : NO_SUCH_HANDLE
    }
    case 'setMemoryAttributes': {
      const vm = r.vms[o.vm]
      const attrs = { address: o.address, size: o.size, attributes: o.attributes }
      return vm ? outcome(() => vm.setMemoryAttributes(attrs)) : NO_SUCH_HANDLE
    }
  }
}

/** Replays `ops` on `kvm` and returns one outcome per op; frees everything it made. */
export async function replay(kvm: Backend, ops: readonly Op[]): Promise<string[]> {
  const mappings: HostMapping[] = []
  for (let i = 0; i < MAPPINGS; i++) mappings.push(await kvm.mmap({ size: MAPPING_SIZE, backing: 'anonymous' }))
  const memfd = await kvm.mmap({ size: 2n * MiB, backing: 'shmem' })
  const r: Replay = { kvm, vms: [], gmems: [], mappings, memfd }
  try {
    const outcomes: string[] = []
    for (const o of ops) outcomes.push(await step(r, o))
    return outcomes
  } finally {
    for (const g of r.gmems) await g?.close()
    for (const vm of r.vms) await vm?.close()
    for (const m of mappings) await m.close()
    await memfd.close()
  }
}

/** How an op reads in a failure report. */
export function describeOp(o: Op): string {
  return JSON.stringify(o, (_k, v: unknown) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v))
}

// ---------------------------------------------------------------------------------------------------
// Generators: values at and around every edge the kernel checks (§C.3), not uniform noise.

const page = 4096n

// Each field is mostly a value the kernel accepts (so slots really get created, moved and deleted and
// later calls meet them), sometimes a value at one of the edges it checks.
const mostly = <T>(valid: fc.Arbitrary<T>, edge: fc.Arbitrary<T>): fc.Arbitrary<T> =>
  fc.oneof({ weight: 4, arbitrary: valid }, { weight: 1, arbitrary: edge })

const gpa = mostly(
  fc.constantFrom(0n, 2n * MiB, 4n * MiB, 0xc0000000n),
  fc.constantFrom(1n, page - 1n, page + 1n, page, 1n << 52n, U64_MAX - page + 1n, U64_MAX - 2n * MiB + 1n),
)
const size = mostly(
  fc.constantFrom(2n * MiB, 2n * MiB, 4n * MiB, page, 0n),
  // 2^31 pages is one past KVM_MEM_MAX_NR_PAGES. Not 2^31 - 1 pages: that slot is valid, and x86's
  // shadow MMU would try to allocate gigabytes of rmap arrays for it (ENOMEM, a resource limit).
  fc.constantFrom(page - 1n, page + 1n, (1n << 31n) * page, U64_MAX - page + 1n),
)
const hva: fc.Arbitrary<HvaRef> = mostly<HvaRef>(
  fc.record({ hva: fc.constant('mapping' as const), index: fc.nat(MAPPINGS - 1), offset: fc.constantFrom(0n, 2n * MiB) }),
  fc.oneof(
    fc.record({ hva: fc.constant('mapping' as const), index: fc.nat(MAPPINGS - 1), offset: fc.constantFrom(1n, page) }),
    fc.record({
      hva: fc.constant('raw' as const),
      value: fc.constantFrom(0n, 1n, 0x7ffffffff000n, 0x7fffffffe000n, 0x800000000000n, 0xffff800000000000n, U64_MAX - page + 1n),
    }),
  ),
)
const fdRef = (vms: number, gmems: number): fc.Arbitrary<FdRef> =>
  mostly<FdRef>(
    fc.record({ fd: fc.constant('gmem' as const), index: fc.oneof(fc.nat(1), fc.nat(Math.max(0, gmems - 1))) }),
    fc.oneof(
      fc.record({ fd: fc.constant('vm' as const), index: fc.nat(Math.max(0, vms - 1)) }),
      fc.constant({ fd: 'system' as const }),
      fc.constant({ fd: 'memfd' as const }),
      fc.record({ fd: fc.constant('raw' as const), value: fc.constantFrom(0, 99999, 0xffffffff) }),
    ),
  )
const slotId = mostly(fc.constantFrom(0, 1, 2), fc.constantFrom(10, 32763, 32764, 0xffff, 0x10000, 0x10001, 0x20000))
const flags = mostly(
  fc.constantFrom(0, 0, 1, 2, 4),
  fc.oneof(fc.constantFrom(3, 5, 6), fc.nat(31).map((b) => (1 << b) >>> 0)),
)
const gmemOffset = mostly(fc.constantFrom(0n, 2n * MiB), fc.constantFrom(page, 1n, 1n << 63n, (1n << 63n) - page, 4n * MiB))

/** Ops that refer to VMs 0..vms-1 and guest_memfds 0..gmems-1 (which may or may not exist). */
export function opArbitrary(vmTypes: readonly number[], vms = 3, gmems = 4): fc.Arbitrary<Op> {
  // Mostly the handles every sequence starts with (sequenceArbitrary), sometimes later or missing ones.
  const vm = fc.oneof({ weight: 6, arbitrary: fc.constant(0) }, fc.nat(vms - 1))
  const gmem = fc.oneof({ weight: 3, arbitrary: fc.nat(1) }, fc.nat(gmems - 1))
  const caps = Object.keys(KVM_CAP_NAMES).map(Number)
  return fc.oneof(
    fc.record({
      op: fc.constant('createVm' as const),
      type: fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...vmTypes) }, fc.constantFrom(1, 2, 7, 255)),
    }),
    fc.record({ op: fc.constant('closeVm' as const), vm }),
    fc.record({ op: fc.constant('checkExtension' as const), vm: fc.option(vm, { nil: null }), cap: fc.constantFrom(...caps) }),
    fc.record({
      op: fc.constant('enableCap' as const),
      vm,
      cap: fc.constantFrom(KVM_CAP_DISABLE_QUIRKS2, 9999),
      arg0: fc.constantFrom(0n, 1n << 7n, 0xffffffffn),
      flags: fc.constantFrom(0, 1),
    }),
    {
      weight: 8,
      arbitrary: fc.record({
        op: fc.constant('setRegion' as const),
        v2: fc.boolean(),
        vm,
        slot: slotId,
        flags,
        gpa,
        size,
        hva,
        gmem: fdRef(vms, gmems),
        gmemOffset,
      }),
    },
    {
      weight: 3,
      arbitrary: fc.record({
        op: fc.constant('createGmem' as const),
        vm,
        size: fc.constantFrom(0n, 1n, page, 2n * MiB, 4n * MiB, 1n << 62n, 1n << 63n),
        flags: fc.constantFrom(0n, 1n, 2n, 3n, 4n, 1n << 63n),
      }),
    },
    fc.record({ op: fc.constant('closeGmem' as const), gmem }),
    {
      weight: 2,
      arbitrary: fc.record({
        op: fc.constant('fallocate' as const),
        gmem,
        mode: fc.constantFrom(0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 8 | FALLOC_FL_KEEP_SIZE),
        offset: fc.constantFrom(0n, page, page - 1n, 2n * MiB, 4n * MiB, (1n << 63n) - page),
        // No huge lengths: allocating them would really allocate (and exhaust) memory on a real kernel.
        length: fc.constantFrom(0n, page, page - 1n, 2n * MiB),
      }),
    },
    fc.record({ op: fc.constant('getDirtyLog' as const), vm, slot: slotId }),
    fc.record({
      op: fc.constant('setMemoryAttributes' as const),
      vm,
      address: fc.constantFrom(0n, page, 1n),
      size: fc.constantFrom(0n, page, 2n * MiB),
      attributes: fc.constantFrom(0n, 1n << 3n, 1n),
    }),
  )
}

/**
 * A whole sequence: a VM of the first supported type with two guest_memfds (4 MiB with the given
 * flags, 2 MiB without), then `ops` random operations on them.
 */
export function sequenceArbitrary(vmTypes: readonly number[], maxOps = 30): fc.Arbitrary<Op[]> {
  const type = vmTypes[0] ?? 0
  return fc
    .tuple(fc.constantFrom(0n, 1n, 3n), fc.array(opArbitrary(vmTypes), { minLength: 1, maxLength: maxOps }))
    .map(([flags, ops]): Op[] => [
      { op: 'createVm', type },
      { op: 'createGmem', vm: 0, size: 4n * MiB, flags },
      { op: 'createGmem', vm: 0, size: 2n * MiB, flags: 0n },
      ...ops,
    ])
}
