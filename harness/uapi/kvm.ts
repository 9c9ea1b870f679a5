// Constants of include/uapi/linux/kvm.h and arch/x86/include/uapi/asm/kvm.h: upstream 6.18, plus the
// capability numbers allocated after it (245..247) so that `kvmconf caps` can name them on newer kernels.
// Spelled as the kernel spells them. Source: shared/reference/upstream-selftests.md §0.3 and §G.
// The KVM Userfault series' values are not here: they collide with upstream ones and live in series.ts.

export const KVMIO = 0xae
export const KVM_API_VERSION = 12

// ---- Capabilities (KVM_CHECK_EXTENSION) -----------------------------------------------------------
export const KVM_CAP_NR_MEMSLOTS = 10
export const KVM_CAP_MAX_VCPUS = 66
export const KVM_CAP_DISABLE_QUIRKS2 = 213
export const KVM_CAP_ARM_EAGER_SPLIT_CHUNK_SIZE = 228
export const KVM_CAP_ARM_SUPPORTED_BLOCK_SIZES = 229
export const KVM_CAP_ARM_SUPPORTED_REG_MASK_RANGES = 230
export const KVM_CAP_USER_MEMORY2 = 231
export const KVM_CAP_MEMORY_FAULT_INFO = 232
export const KVM_CAP_MEMORY_ATTRIBUTES = 233
export const KVM_CAP_GUEST_MEMFD = 234
export const KVM_CAP_VM_TYPES = 235
export const KVM_CAP_PRE_FAULT_MEMORY = 236
export const KVM_CAP_X86_APIC_BUS_CYCLES_NS = 237
export const KVM_CAP_X86_GUEST_MODE = 238
export const KVM_CAP_ARM_WRITABLE_IMP_ID_REGS = 239
export const KVM_CAP_ARM_EL2 = 240
export const KVM_CAP_ARM_EL2_E2H0 = 241
export const KVM_CAP_RISCV_MP_STATE_RESET = 242
export const KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED = 243
export const KVM_CAP_GUEST_MEMFD_FLAGS = 244
export const KVM_CAP_ARM_SEA_TO_USER = 245
export const KVM_CAP_S390_USER_OPEREXEC = 246
export const KVM_CAP_S390_KEYOP = 247

/** Names of the capabilities above, for `kvmconf caps` and messages. */
export const KVM_CAP_NAMES: Readonly<Record<number, string>> = {
  [KVM_CAP_NR_MEMSLOTS]: 'KVM_CAP_NR_MEMSLOTS',
  [KVM_CAP_MAX_VCPUS]: 'KVM_CAP_MAX_VCPUS',
  [KVM_CAP_DISABLE_QUIRKS2]: 'KVM_CAP_DISABLE_QUIRKS2',
  [KVM_CAP_ARM_EAGER_SPLIT_CHUNK_SIZE]: 'KVM_CAP_ARM_EAGER_SPLIT_CHUNK_SIZE',
  [KVM_CAP_ARM_SUPPORTED_BLOCK_SIZES]: 'KVM_CAP_ARM_SUPPORTED_BLOCK_SIZES',
  [KVM_CAP_ARM_SUPPORTED_REG_MASK_RANGES]: 'KVM_CAP_ARM_SUPPORTED_REG_MASK_RANGES',
  [KVM_CAP_USER_MEMORY2]: 'KVM_CAP_USER_MEMORY2',
  [KVM_CAP_MEMORY_FAULT_INFO]: 'KVM_CAP_MEMORY_FAULT_INFO',
  [KVM_CAP_MEMORY_ATTRIBUTES]: 'KVM_CAP_MEMORY_ATTRIBUTES',
  [KVM_CAP_GUEST_MEMFD]: 'KVM_CAP_GUEST_MEMFD',
  [KVM_CAP_VM_TYPES]: 'KVM_CAP_VM_TYPES',
  [KVM_CAP_PRE_FAULT_MEMORY]: 'KVM_CAP_PRE_FAULT_MEMORY',
  [KVM_CAP_X86_APIC_BUS_CYCLES_NS]: 'KVM_CAP_X86_APIC_BUS_CYCLES_NS',
  [KVM_CAP_X86_GUEST_MODE]: 'KVM_CAP_X86_GUEST_MODE',
  [KVM_CAP_ARM_WRITABLE_IMP_ID_REGS]: 'KVM_CAP_ARM_WRITABLE_IMP_ID_REGS',
  [KVM_CAP_ARM_EL2]: 'KVM_CAP_ARM_EL2',
  [KVM_CAP_ARM_EL2_E2H0]: 'KVM_CAP_ARM_EL2_E2H0',
  [KVM_CAP_RISCV_MP_STATE_RESET]: 'KVM_CAP_RISCV_MP_STATE_RESET',
  [KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED]: 'KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED',
  [KVM_CAP_GUEST_MEMFD_FLAGS]: 'KVM_CAP_GUEST_MEMFD_FLAGS',
  [KVM_CAP_ARM_SEA_TO_USER]: 'KVM_CAP_ARM_SEA_TO_USER',
  [KVM_CAP_S390_USER_OPEREXEC]: 'KVM_CAP_S390_USER_OPEREXEC',
  [KVM_CAP_S390_KEYOP]: 'KVM_CAP_S390_KEYOP',
}

// ---- ioctl numbers (x86-64/arm64 generic _IOC encoding; pinned in kvm.spec.ts) -------------------
export const KVM_GET_API_VERSION = 0xae00
export const KVM_CREATE_VM = 0xae01
export const KVM_CHECK_EXTENSION = 0xae03
export const KVM_GET_VCPU_MMAP_SIZE = 0xae04
export const KVM_CREATE_VCPU = 0xae41
export const KVM_GET_DIRTY_LOG = 0x4010ae42
export const KVM_SET_NR_MMU_PAGES = 0xae44
export const KVM_SET_USER_MEMORY_REGION = 0x4020ae46
export const KVM_SET_USER_MEMORY_REGION2 = 0x40a0ae49
export const KVM_RUN = 0xae80
export const KVM_GET_REGS = 0x8090ae81
export const KVM_SET_REGS = 0x4090ae82
export const KVM_GET_SREGS = 0x8138ae83
export const KVM_SET_SREGS = 0x4138ae84
export const KVM_ENABLE_CAP = 0x4068aea3
export const KVM_SET_MEMORY_ATTRIBUTES = 0x4020aed2
export const KVM_CREATE_GUEST_MEMFD = 0xc040aed4
export const KVM_PRE_FAULT_MEMORY = 0xc040aed5

// ---- Memslot flags --------------------------------------------------------------------------------
export const KVM_MEM_LOG_DIRTY_PAGES = 1 << 0
export const KVM_MEM_READONLY = 1 << 1
export const KVM_MEM_GUEST_MEMFD = 1 << 2
/** Kernel-internal: the only flags the legacy KVM_SET_USER_MEMORY_REGION accepts. */
export const KVM_SET_USER_MEMORY_REGION_V1_FLAGS = KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY

/** x86: KVM_ADDRESS_SPACE_NUM with SMM (address space 1 is SMRAM); VMs with private memory have one. */
export const KVM_MAX_NR_ADDRESS_SPACES = 2
/** x86: SHRT_MAX minus the three internal slots (KVM_INTERNAL_MEM_SLOTS, once KVM_PRIVATE_MEM_SLOTS). */
export const KVM_USER_MEM_SLOTS = 32764
/** Generic: memslots are limited to 2^31 - 1 pages so dirty bitmaps index with an int. */
export const KVM_MEM_MAX_NR_PAGES = 2 ** 31 - 1

// ---- Exit reasons ---------------------------------------------------------------------------------
export const KVM_EXIT_UNKNOWN = 0
export const KVM_EXIT_EXCEPTION = 1
export const KVM_EXIT_IO = 2
export const KVM_EXIT_HYPERCALL = 3
export const KVM_EXIT_DEBUG = 4
export const KVM_EXIT_HLT = 5
export const KVM_EXIT_MMIO = 6
export const KVM_EXIT_IRQ_WINDOW_OPEN = 7
export const KVM_EXIT_SHUTDOWN = 8
export const KVM_EXIT_FAIL_ENTRY = 9
export const KVM_EXIT_INTR = 10
export const KVM_EXIT_INTERNAL_ERROR = 17
export const KVM_EXIT_MEMORY_FAULT = 39
export const KVM_EXIT_TDX = 40
export const KVM_EXIT_ARM_SEA = 41

export const KVM_EXIT_IO_IN = 0
export const KVM_EXIT_IO_OUT = 1

export const KVM_INTERNAL_ERROR_EMULATION = 1
export const KVM_INTERNAL_ERROR_SIMUL_EX = 2
export const KVM_INTERNAL_ERROR_DELIVERY_EV = 3
export const KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON = 4

/** kvm_run.memory_fault.flags: the fault was on a private access (clear: shared). */
export const KVM_MEMORY_EXIT_FLAG_PRIVATE = 1n << 3n

// ---- Memory attributes ----------------------------------------------------------------------------
export const KVM_MEMORY_ATTRIBUTE_PRIVATE = 1n << 3n

// ---- guest_memfd ----------------------------------------------------------------------------------
export const GUEST_MEMFD_FLAG_MMAP = 1n << 0n
export const GUEST_MEMFD_FLAG_INIT_SHARED = 1n << 1n

// ---- x86 VM types (KVM_CREATE_VM's argument; KVM_CAP_VM_TYPES is a bitmask of 1 << type) -----------
export const KVM_X86_DEFAULT_VM = 0
export const KVM_X86_SW_PROTECTED_VM = 1
export const KVM_X86_SEV_VM = 2
export const KVM_X86_SEV_ES_VM = 3
export const KVM_X86_SNP_VM = 4
export const KVM_X86_TDX_VM = 5

export const KVM_X86_VM_TYPE_NAMES: Readonly<Record<number, string>> = {
  [KVM_X86_DEFAULT_VM]: 'KVM_X86_DEFAULT_VM',
  [KVM_X86_SW_PROTECTED_VM]: 'KVM_X86_SW_PROTECTED_VM',
  [KVM_X86_SEV_VM]: 'KVM_X86_SEV_VM',
  [KVM_X86_SEV_ES_VM]: 'KVM_X86_SEV_ES_VM',
  [KVM_X86_SNP_VM]: 'KVM_X86_SNP_VM',
  [KVM_X86_TDX_VM]: 'KVM_X86_TDX_VM',
}

// ---- x86 quirks (KVM_CAP_DISABLE_QUIRKS2) ---------------------------------------------------------
/** arch/x86/include/uapi/asm/kvm.h: the eighth quirk, after KVM_X86_QUIRK_MWAIT_NEVER_UD_FAULTS (1 << 6). */
export const KVM_X86_QUIRK_SLOT_ZAP_ALL = 1 << 7
