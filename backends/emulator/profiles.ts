// Kernel profiles: which KVM the emulator models, as data.
//
// A profile is a flat set of options; a variant is an existing profile with some options overridden
// (`defineProfile(base, overrides)`), so the KVM Userfault profiles (userfault-v2, userfault-v3) are
// upstream-6.18 plus a `userfault` series option. The rules in the other files read options from here and
// never test a profile's name.

import { KVM_USER_MEM_SLOTS, KVM_X86_DEFAULT_VM, KVM_X86_SW_PROTECTED_VM } from '../../harness/uapi/kvm.ts'

/** The versions of the KVM Userfault series the emulator models (their rules: userfault.ts). */
export type ModelledSeries = 'v2' | 'v3'

/** The KVM Userfault series a profile applies on top of upstream. */
export interface UserfaultOption {
  series: ModelledSeries
}

export interface KernelProfile {
  readonly name: string
  /** One line for `kvmconf caps` and reports. */
  readonly description: string
  /** The kernel release whose rules the profile follows. */
  readonly release: string
  readonly arch: 'x86_64'
  /** Two-dimensional paging (EPT/NPT, TDP MMU). Without it: shadow paging, no KVM_PRE_FAULT_MEMORY. */
  readonly tdp: boolean
  /** KVM_CREATE_VM types this kernel accepts (x86 KVM_X86_*_VM); KVM_CAP_VM_TYPES is their bitmask. */
  readonly vmTypes: readonly number[]
  /** CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES: KVM_SET_MEMORY_ATTRIBUTES exists. */
  readonly memoryAttributes: boolean
  /** CONFIG_KVM_GUEST_MEMFD: KVM_CREATE_GUEST_MEMFD and KVM_MEM_GUEST_MEMFD exist. */
  readonly guestMemfd: boolean
  /** CONFIG_HAVE_KVM_READONLY_MEM: KVM_MEM_READONLY (x86: not for VMs with protected state). */
  readonly readonlyMem: boolean
  /** KVM_USER_MEM_SLOTS: the slot-id bound and KVM_CAP_NR_MEMSLOTS. */
  readonly nrMemslots: number
  /** KVM_MAX_VCPUS (CONFIG_KVM_MAX_NR_VCPUS): KVM_CAP_MAX_VCPUS. */
  readonly maxVcpus: number
  /** KVM_MAX_NR_ADDRESS_SPACES: 2 with CONFIG_KVM_SMM (address space 1 is SMRAM), else 1. */
  readonly nrAddressSpaces: number
  /**
   * Guest physical address bits a memslot may reach: x86 kvm_mmu_max_gfn() uses the host MAXPHYADDR
   * with TDP and 52 with shadow paging. Host-dependent with TDP; override it to model a given host.
   */
  readonly maxGpaBits: number
  /** kvm_caps.supported_quirks: what KVM_CAP_DISABLE_QUIRKS2 reports and accepts. */
  readonly supportedQuirks: number
  /** The KVM Userfault series applied, or null for a kernel without it (every released kernel). */
  readonly userfault: UserfaultOption | null
  /**
   * How KVM reaches a guest page's host memory when it faults it in, which decides what a userfaultfd
   * sees of the access:
   * - 'gup': hva_to_pfn() -> get_user_pages() of the page (upstream, TDP or shadow paging). The fault is
   *   on the page's first byte, and the slow path is FOLL_INTERRUPTIBLE (kvm: x86: "Allow to respond to
   *   generic signals during slow page faults", 6.3), so a kick ends a wait on a userfaultfd with
   *   KVM_EXIT_INTR; a host page that cannot be had is KVM_EXIT_MEMORY_FAULT with EFAULT.
   * - 'uaccess': kvm_pvm emulates every guest instruction and copies through userspace_addr with
   *   copy_{from,to}_user() (shared/reference/host-kvm.md): the fault is on the exact byte, a kernel-mode
   *   uaccess fault is not interruptible (measured: a kick does not end the wait), and a host page that
   *   cannot be had (no mapping, SIGBUS, a UFFD_USER_MODE_ONLY userfaultfd) turns the access into
   *   KVM_EXIT_MMIO (measured).
   */
  readonly guestAccess: 'gup' | 'uaccess'
}

export type ProfileOptions = Omit<KernelProfile, 'name' | 'description'>

/** A profile from a base and overrides: how variants (and the series profiles) are built. */
export function defineProfile(
  base: ProfileOptions,
  overrides: Partial<ProfileOptions> & { name: string; description: string },
): KernelProfile {
  const profile = { ...base, ...overrides }
  if (profile.vmTypes.length === 0) throw new Error(`profile ${profile.name}: vmTypes is empty`)
  if (profile.nrAddressSpaces < 1) throw new Error(`profile ${profile.name}: nrAddressSpaces < 1`)
  return Object.freeze({ ...profile, vmTypes: Object.freeze([...profile.vmTypes]) })
}

/** Upstream x86-64 KVM of Linux 6.18 on a host with EPT/NPT (the profile the suites are written to). */
export const UPSTREAM_6_18: KernelProfile = defineProfile(
  {
    release: '6.18',
    arch: 'x86_64',
    tdp: true,
    vmTypes: [KVM_X86_DEFAULT_VM, KVM_X86_SW_PROTECTED_VM],
    memoryAttributes: true,
    guestMemfd: true,
    readonlyMem: true,
    nrMemslots: KVM_USER_MEM_SLOTS,
    maxVcpus: 4096,
    nrAddressSpaces: 2,
    maxGpaBits: 52,
    // KVM_X86_VALID_QUIRKS of 6.18.0: LINT0_REENABLED .. IGNORE_GUEST_PAT (bits 0..9). 6.18.y stable
    // kernels add VMCS12_ALLOW_FREEZE_IN_SMM (bit 10); see pvm-6.18.
    supportedQuirks: 0x3ff,
    userfault: null,
    guestAccess: 'gup',
  },
  { name: 'upstream-6.18', description: 'upstream Linux 6.18, x86-64 with TDP (EPT/NPT)' },
)

/**
 * The project's own machines (shared/reference/host-kvm.md): 6.18.y with /dev/kvm from kvm_pvm, i.e.
 * shadow paging, no private memory, no SMM. The values marked "measured" were read from such a host.
 */
export const PVM_6_18: KernelProfile = defineProfile(UPSTREAM_6_18, {
  name: 'pvm-6.18',
  description: "the project's machines: Linux 6.18.y, kvm_pvm (shadow paging, no private memory)",
  tdp: false,
  vmTypes: [KVM_X86_DEFAULT_VM],
  memoryAttributes: false,
  // measured: KVM_CAP_MAX_VCPUS 1024, KVM_CAP_MULTI_ADDRESS_SPACE 0 (slot as_id 1 is EINVAL),
  // KVM_CAP_DISABLE_QUIRKS2 0x5ff (bits 0..8 and 10; no IGNORE_GUEST_PAT without TDP).
  maxVcpus: 1024,
  nrAddressSpaces: 1,
  maxGpaBits: 52,
  supportedQuirks: 0x5ff,
  guestAccess: 'uaccess',
})

/**
 * Upstream 6.18 with the KVM Userfault series v2 (9 Jan 2025, lore 20250109204929.1106563-1-jthoughton@google.com)
 * applied: KVM_CAP_USERFAULT is 239, a guest_memfd slot may only toggle KVM_MEM_USERFAULT.
 */
export const USERFAULT_V2: KernelProfile = defineProfile(UPSTREAM_6_18, {
  name: 'userfault-v2',
  description: 'upstream Linux 6.18 plus the KVM Userfault series v2 (Jan 2025; KVM_CAP_USERFAULT 239)',
  userfault: { series: 'v2' },
})

/**
 * Upstream 6.18 with the KVM Userfault series v3 (18 Jun 2025, lore 20250618042424.330664-1-jthoughton@google.com),
 * the latest posted: KVM_CAP_USERFAULT is 243, guest_memfd slots may change but not move.
 */
export const USERFAULT_V3: KernelProfile = defineProfile(UPSTREAM_6_18, {
  name: 'userfault-v3',
  description: 'upstream Linux 6.18 plus the KVM Userfault series v3 (Jun 2025; KVM_CAP_USERFAULT 243)',
  userfault: { series: 'v3' },
})

export const PROFILES: ReadonlyMap<string, KernelProfile> = new Map(
  [UPSTREAM_6_18, PVM_6_18, USERFAULT_V2, USERFAULT_V3].map((p) => [p.name, p]),
)

/**
 * The emulator's default: upstream 6.18 plus the latest posted KVM Userfault series, so a plain run
 * exercises every suite. A comparison with a real kernel uses the profile that matches it (pvm-6.18 for
 * the project's machines: backends/differential).
 */
export const DEFAULT_PROFILE = USERFAULT_V3.name

export function profileNames(): string[] {
  return [...PROFILES.keys()]
}

/** The profile called `name`; an unknown name is a configuration error that lists the known ones. */
export function getProfile(name: string): KernelProfile {
  const profile = PROFILES.get(name)
  if (profile === undefined) {
    throw new Error(`unknown emulator profile '${name}'; known profiles: ${profileNames().join(', ')}`)
  }
  return profile
}
