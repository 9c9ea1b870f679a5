// Capability gating: what upstream spells TEST_REQUIRE.
//
// A test states what it needs before it does anything. A missing requirement skips the test with a
// reason that names the capability and the value the backend reported, so a skip in CI reads as a
// fact about the machine under test, never as a pass.

import type { Backend, Feature } from './backend.ts'
import { probeKvmUserfault } from './kvm-util/userfault.ts'
import { KVM_CAP_NAMES, KVM_CAP_VM_TYPES, KVM_X86_DEFAULT_VM, KVM_X86_VM_TYPE_NAMES } from './uapi/kvm.ts'

/** The part of a vitest test context gating needs: the backend and the skip with a note. */
export interface GateContext {
  kvm: Backend
  skip: (note?: string) => never
}

export interface Requirement {
  /** KVM_CHECK_EXTENSION on /dev/kvm must be non-zero, or contain every bit of `mask`. */
  cap?: number | { cap: number; mask: number | bigint }
  /** KVM_CAP_VM_TYPES must include this VM type. */
  vmType?: number
  /** The backend must be able to do this (BackendInfo.features). */
  feature?: Feature
  /**
   * The kernel must have KVM Userfault (series, not upstream): decided by probing
   * KVM_SET_USER_MEMORY_REGION2 with KVM_MEM_USERFAULT (harness/kvm-util/userfault.ts), never by a
   * capability number, which is series-specific.
   */
  userfault?: true
}

export function capName(cap: number): string {
  return KVM_CAP_NAMES[cap] ?? `capability ${cap}`
}

export function vmTypeName(type: number): string {
  return KVM_X86_VM_TYPE_NAMES[type] ?? `VM type ${type}`
}

/** Why `req` is not met by `kvm`, or undefined when it is. */
export async function unmet(kvm: Backend, req: Requirement): Promise<string | undefined> {
  if (req.feature !== undefined) {
    const info = await kvm.info()
    if (!info.features.includes(req.feature)) {
      return `the ${kvm.name} backend cannot do '${req.feature}' yet`
    }
  }
  if (req.cap !== undefined) {
    const { cap, mask } = typeof req.cap === 'number' ? { cap: req.cap, mask: undefined } : req.cap
    const value = await kvm.checkExtension(cap)
    if (mask === undefined ? value === 0 : (BigInt(value) & BigInt(mask)) !== BigInt(mask)) {
      const want = mask === undefined ? 'non-zero' : `bits 0x${BigInt(mask).toString(16)}`
      return `${capName(cap)} = ${value} on this ${kvm.name} backend, the test needs ${want}`
    }
  }
  if (req.userfault) {
    const probe = await probeKvmUserfault(kvm)
    if (!probe.supported) return probe.reason
  }
  if (req.vmType !== undefined && req.vmType !== KVM_X86_DEFAULT_VM) {
    const types = await kvm.checkExtension(KVM_CAP_VM_TYPES)
    if ((BigInt(types) & (1n << BigInt(req.vmType))) === 0n) {
      return `KVM_CAP_VM_TYPES = 0x${types.toString(16)} lacks ${vmTypeName(req.vmType)}`
    }
  }
  return undefined
}

/** Skips the running test, with the reason, unless every requirement holds. */
export async function requires(t: GateContext, ...reqs: Requirement[]): Promise<void> {
  for (const req of reqs) {
    const why = await unmet(t.kvm, req)
    if (why !== undefined) t.skip(why)
  }
}

/** TEST_REQUIRE(condition): skips with `reason` when the condition does not hold. */
export function requireThat(t: Pick<GateContext, 'skip'>, condition: boolean, reason: string): void {
  if (!condition) t.skip(reason)
}

/** The VM types KVM_CAP_VM_TYPES lists (just the default VM when it reports 0, as upstream). */
export async function supportedVmTypes(kvm: Backend): Promise<number[]> {
  const mask = await kvm.checkExtension(KVM_CAP_VM_TYPES)
  if (mask === 0) return [KVM_X86_DEFAULT_VM]
  const types: number[] = []
  for (let t = 0; t < 32; t++) if (mask & (1 << t)) types.push(t)
  return types
}
