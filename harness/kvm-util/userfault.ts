// KVM Userfault (James Houghton's series, NOT upstream; upstream-selftests.md §F) from a test's side,
// backend-neutral: the probe that decides whether a kernel has it, the capability number a run was told,
// and the memslot-with-bitmap setup the userfault tests share.
//
// The series' KVM_CAP_USERFAULT is 239 in v1/v2 and 243 in v3, numbers upstream later gave to arm64
// capabilities, and memslot flag bit 3 is unallocated upstream. So support is decided by asking
// KVM_SET_USER_MEMORY_REGION2 itself, never by a capability number; the number is used only where a
// test needs it (KVM_CHECK_EXTENSION, KVM_ENABLE_CAP) and only when the run was told it
// (`kvmconf run --userfault-cap N`, which sets KVMCONF_USERFAULT_CAP).

import type { Backend, Backing, HostMapping, UserfaultBitmap, Vm } from '../backend.ts'
import { KvmError } from '../errors.ts'
import { type SeriesVersion, KVM_MEM_USERFAULT, USERFAULT_SERIES } from '../uapi/series.ts'

export { KVM_MEM_USERFAULT }

/** The environment variable that carries `--userfault-cap N` to the test workers. */
export const USERFAULT_CAP_ENV = 'KVMCONF_USERFAULT_CAP'

/** Whether the kernel behind a backend has KVM Userfault, and if not, what refused it. */
export type UserfaultProbe =
  | { supported: true }
  | { supported: false; code: string; op: string; reason: string }

const PROBE_PAGE = 4096

/**
 * The probe: a scratch VM and a one-page memslot with KVM_MEM_USERFAULT through
 * KVM_SET_USER_MEMORY_REGION2, its userfault_bitmap a valid one-word bitmap with the page's bit set.
 * A kernel that accepts it has KVM Userfault; a refusal is the reason tests give when they skip, e.g.
 * "KVM_SET_USER_MEMORY_REGION2 refuses KVM_MEM_USERFAULT (EINVAL): this kernel lacks KVM Userfault".
 * Everything the probe made is closed before it resolves. Errors other than the kernel's refusal (a
 * backend that cannot map memory at all) reject.
 */
export async function probeKvmUserfault(kvm: Backend): Promise<UserfaultProbe> {
  const vm = await kvm.createVm()
  let mem: HostMapping | undefined
  let bitmap: UserfaultBitmap | undefined
  try {
    mem = await kvm.mmap({ size: PROBE_PAGE, backing: 'anonymous' })
    bitmap = await kvm.createUserfaultBitmap(1)
    await bitmap.fill(true)
    await vm.setUserMemoryRegion2({
      slot: 0, flags: KVM_MEM_USERFAULT, guestPhysAddr: 0, memorySize: PROBE_PAGE, userspaceAddr: mem.addr,
      userfaultBitmap: bitmap.addr,
    })
    return { supported: true }
  } catch (e) {
    if (!KvmError.is(e) || e.op !== 'KVM_SET_USER_MEMORY_REGION2') throw e
    const why = e.code === 'ENOTTY' ? 'this kernel has no KVM_SET_USER_MEMORY_REGION2' : 'this kernel lacks KVM Userfault'
    return { supported: false, code: e.code, op: e.op, reason: `${e.op} refuses KVM_MEM_USERFAULT (${e.code}): ${why}` }
  } finally {
    await vm.close()
    await bitmap?.close()
    await mem?.close()
  }
}

/**
 * `--userfault-cap N` as given: a capability number (a positive integer), or the reason it is not one.
 * The series' numbers are the usual answers: 239 for v1/v2, 243 for v3.
 */
export function parseUserfaultCap(text: string): number | { error: string } {
  const n = /^\d+$/.test(text.trim()) ? Number(text.trim()) : NaN
  if (!Number.isSafeInteger(n) || n <= 0 || n > 0x7fffffff) {
    return {
      error: `--userfault-cap ${text}: expected a capability number (KVM_CAP_USERFAULT is ` +
        `${USERFAULT_SERIES.v2.capUserfault} in the series' v1/v2, ${USERFAULT_SERIES.v3.capUserfault} in v3)`,
    }
  }
  return n
}

/** KVM_CAP_USERFAULT's number for this run (KVMCONF_USERFAULT_CAP), or null when the run was not told. */
export function userfaultCap(env: NodeJS.ProcessEnv = process.env): number | null {
  const text = env[USERFAULT_CAP_ENV]
  if (text === undefined || text === '') return null
  const cap = parseUserfaultCap(text)
  if (typeof cap !== 'number') throw new RangeError(`${USERFAULT_CAP_ENV}: ${cap.error}`)
  return cap
}

/**
 * KVM_CAP_USERFAULT's number for this backend: the one the run was given (`--userfault-cap`), else the
 * one of the series an emulator profile names (`userfault-v2`, `userfault-v3`: the emulator knows which
 * series it models), else null. A real kernel's number is never guessed: the series' numbers collide
 * with upstream capabilities (239, 243), so it must be given.
 */
export async function userfaultCapOf(kvm: Backend, env: NodeJS.ProcessEnv = process.env): Promise<number | null> {
  const given = userfaultCap(env)
  if (given !== null) return given
  const series = /^userfault-(v[123])$/.exec((await kvm.info()).profile ?? '')?.[1] as SeriesVersion | undefined
  return series === undefined ? null : USERFAULT_SERIES[series].capUserfault
}

/** Why a test that needs KVM_CAP_USERFAULT's number skips when the run was not given it. */
export const USERFAULT_CAP_UNKNOWN =
  `KVM_CAP_USERFAULT's number is series-specific (${USERFAULT_SERIES.v2.capUserfault} in v1/v2, ` +
  `${USERFAULT_SERIES.v3.capUserfault} in v3) and was not given: kvmconf run --userfault-cap N`

/** One memslot with host memory and a userfault bitmap of its own size, for the userfault tests. */
export interface UserfaultSlot {
  readonly slot: number
  readonly gpa: bigint
  readonly npages: number
  readonly mem: HostMapping
  readonly bitmap: UserfaultBitmap
  /**
   * KVM_SET_USER_MEMORY_REGION2 of this slot with `flags` (KVM_MEM_USERFAULT among them, or not) and
   * `userfaultBitmap` (this slot's bitmap unless given), the other fields unchanged.
   */
  set(flags: number, userfaultBitmap?: bigint, extra?: { guestMemfd?: number; guestMemfdOffset?: bigint }): Promise<void>
  /** The gpa of page `n` of the slot. */
  pageGpa(n: number): bigint
}

/**
 * Host memory of `npages` pages (`backing`, anonymous by default) and a bitmap for them, with every bit
 * clear. The memslot itself is made by the first set().
 */
export async function userfaultSlot(
  kvm: Backend,
  vm: Vm,
  o: { slot: number; gpa: bigint | number; npages: number; backing?: Backing },
): Promise<UserfaultSlot> {
  const gpa = BigInt(o.gpa)
  const size = o.npages * PROBE_PAGE
  const mem = await kvm.mmap({ size, backing: o.backing ?? 'anonymous' })
  const bitmap = await kvm.createUserfaultBitmap(o.npages)
  await bitmap.fill(false)
  return {
    slot: o.slot,
    gpa,
    npages: o.npages,
    mem,
    bitmap,
    set: (flags, userfaultBitmap = bitmap.addr, extra = {}) =>
      vm.setUserMemoryRegion2({
        slot: o.slot, flags, guestPhysAddr: gpa, memorySize: size, userspaceAddr: mem.addr, userfaultBitmap, ...extra,
      }),
    pageGpa: (n) => gpa + BigInt(n * PROBE_PAGE),
  }
}
