// The KVM Userfault series (James Houghton): values by series version. NOT upstream.
//
// The series' capability numbers collide with later upstream ones (236 = KVM_CAP_PRE_FAULT_MEMORY,
// 239 = KVM_CAP_ARM_WRITABLE_IMP_ID_REGS, 243 = KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED), and memslot
// flag bit 3 is still unallocated upstream. So a real kernel's support is detected by probing, never by
// a capability number. Source: shared/reference/upstream-selftests.md §0.1 and §F.

export type SeriesVersion = 'rfc' | 'v1' | 'v2' | 'v3'

export interface UserfaultSeries {
  version: SeriesVersion
  /** Posting date of the cover letter. */
  posted: string
  /** lore message-id of the cover letter. */
  coverLetter: string
  /** KVM_CAP_USERFAULT: an enable-cap in the RFC, informational (EINVAL on KVM_ENABLE_CAP) after. */
  capUserfault: number
  /** KVM_MEM_USERFAULT memslot flag; the RFC marked pages with a memory attribute instead. */
  memUserfault: number | null
  /** Byte offset of `userfault_bitmap` in kvm_userspace_memory_region2 (the first pad2 word). */
  userfaultBitmapOffset: number | null
  /** kvm_run.memory_fault.flags bit of a userfault exit. */
  memoryExitFlagUserfault: bigint
  /** RFC only: the KVM_MEMORY_ATTRIBUTE_USERFAULT attribute. */
  memoryAttributeUserfault: bigint | null
  /** RFC only: KVM_ENABLE_CAP args[0] values. */
  enable: { enable: bigint; disable: bigint } | null
  /** RFC only: KVM_READ_USERFAULT = _IOR(KVMIO, 0xd5, struct kvm_fault). */
  readUserfaultIoctl: number | null
}

export const KVM_MEM_USERFAULT = 1 << 3
export const KVM_MEMORY_EXIT_FLAG_USERFAULT = 1n << 4n

export const USERFAULT_SERIES: Readonly<Record<SeriesVersion, UserfaultSeries>> = {
  rfc: {
    version: 'rfc',
    posted: '2024-07-10',
    coverLetter: '20240710234222.2333120-1-jthoughton@google.com',
    capUserfault: 236,
    memUserfault: null,
    userfaultBitmapOffset: null,
    memoryExitFlagUserfault: KVM_MEMORY_EXIT_FLAG_USERFAULT,
    memoryAttributeUserfault: 1n << 4n,
    enable: { enable: 1n << 0n, disable: 1n << 1n },
    readUserfaultIoctl: 0x8008aed5,
  },
  v1: {
    version: 'v1',
    posted: '2024-12-04',
    coverLetter: '20241204191349.1730936-1-jthoughton@google.com',
    capUserfault: 239,
    memUserfault: KVM_MEM_USERFAULT,
    userfaultBitmapOffset: 48,
    memoryExitFlagUserfault: KVM_MEMORY_EXIT_FLAG_USERFAULT,
    memoryAttributeUserfault: null,
    enable: null,
    readUserfaultIoctl: null,
  },
  v2: {
    version: 'v2',
    posted: '2025-01-09',
    coverLetter: '20250109204929.1106563-1-jthoughton@google.com',
    capUserfault: 239,
    memUserfault: KVM_MEM_USERFAULT,
    userfaultBitmapOffset: 48,
    memoryExitFlagUserfault: KVM_MEMORY_EXIT_FLAG_USERFAULT,
    memoryAttributeUserfault: null,
    enable: null,
    readUserfaultIoctl: null,
  },
  v3: {
    version: 'v3',
    posted: '2025-06-18',
    coverLetter: '20250618042424.330664-1-jthoughton@google.com',
    capUserfault: 243,
    memUserfault: KVM_MEM_USERFAULT,
    userfaultBitmapOffset: 48,
    memoryExitFlagUserfault: KVM_MEMORY_EXIT_FLAG_USERFAULT,
    memoryAttributeUserfault: null,
    enable: null,
    readUserfaultIoctl: null,
  },
}
