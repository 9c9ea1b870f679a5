// The boot memslot: what a 64-bit long-mode vCPU needs in guest memory before its first instruction,
// and the register state KVM_SET_SREGS/KVM_SET_REGS give it.
//
// Like kvm_util (lib/x86/processor.c: vcpu_init_sregs(), virt_arch_pgd_alloc()), code, page tables and
// descriptor tables live in memslot 0 at GPA 0, so deleting slot 0 pulls the guest's code and page tables
// away (set_memory_region_test's test_delete_memory_region relies on that). The slot is 2 MiB, exactly one
// guest large page, and every address below is fixed:
//
//   GPA                    size       contents
//   0x000000               4 KiB      unused, zero (nothing lives at GVA 0)
//   0x001000               4 KiB      PML4: entry 0 -> PDPT
//   0x002000               4 KiB      PDPT: entries 0..63 -> the 64 PDs
//   0x003000..0x042fff     256 KiB    64 PDs: PD i entry j maps the 2 MiB page (512 i + j) << 21
//   0x043000               4 KiB      GDT: null, 0x08 64-bit code, 0x10 data, 0x18 64-bit TSS (16 bytes)
//   0x044000               4 KiB      TSS (104 bytes used)
//   0x045000               4 KiB      IDT: 256 zeroed 16-byte gates (IDTR limit 0xfff)
//   0x046000..0x07ffff     232 KiB    unused, zero
//   0x080000..0x1fffff     96 x 16 KiB  one area per vCPU id 0..95, at 0x80000 + id * 0x4000:
//       +0x0000            12 KiB     code (RIP starts here)
//       +0x3000            2 KiB      lidt pseudo-descriptors, one per `lidt` step, 16 bytes apart
//       +0x3800            2 KiB      stack; RSP starts at +0x4000 (the area's end)
//
// Bytes 0..0x7ffff are the same for every program and every vCPU. A vCPU's area is its own, so the vCPUs
// of one VM can run different programs from the one shared slot.
//
// The page tables identity-map GVA = GPA for [0, 64 GiB) with 2 MiB pages (SDM vol. 3, 4.5: PML4E and
// PDPTE present|writable, PDE present|writable|PS). 64 GiB is 2^36: without KVM_SET_CPUID2, KVM takes
// MAXPHYADDR = 36 (cpuid_query_maxphyaddr()), so a PDE pointing higher would set reserved bits. The
// zeroed IDT makes any exception a triple fault (KVM_EXIT_SHUTDOWN) until a program loads its own.

import { encodeRegs, encodeSregs, type Regs, type Segment, type Sregs } from './kvm-regs.ts'

import { BOOT_SLOT, BOOT_SLOT_GPA, BOOT_SLOT_SIZE } from '../../../harness/guest-program.ts'

/** The boot memslot (harness/guest-program.ts): slot 0 at GPA 0, 2 MiB. */
export { BOOT_SLOT, BOOT_SLOT_GPA, BOOT_SLOT_SIZE }

export const PML4_GPA = 0x1000
export const PDPT_GPA = 0x2000
/** The first PD; PD i is at PD_GPA + i * 4 KiB. */
export const PD_GPA = 0x3000
export const PD_COUNT = 64
export const GDT_GPA = 0x4_3000
export const TSS_GPA = 0x4_4000
export const IDT_GPA = 0x4_5000

/** End of the identity map: every GVA below it is mapped to the same GPA. */
export const IDENTITY_MAP_END = BigInt(PD_COUNT) << 30n
const LARGE_PAGE = 0x20_0000

/** Where the per-vCPU areas start, their size and how many fit. */
export const VCPU_AREAS_GPA = 0x8_0000
export const VCPU_AREA_SIZE = 0x4000
export const MAX_VCPU_ID = (BOOT_SLOT_SIZE - VCPU_AREAS_GPA) / VCPU_AREA_SIZE - 1
/** Offsets inside a vCPU's area. */
export const CODE_OFFSET = 0
export const CODE_SIZE = 0x3000
export const LIDT_DESCRIPTORS_OFFSET = 0x3000
export const LIDT_DESCRIPTOR_STRIDE = 16
export const LIDT_DESCRIPTORS_MAX = 0x800 / LIDT_DESCRIPTOR_STRIDE
export const STACK_OFFSET = 0x3800

// Page-table entry bits (SDM vol. 3, tables 4-14 to 4-18).
export const PTE_PRESENT = 1n << 0n
export const PTE_WRITABLE = 1n << 1n
export const PTE_LARGE = 1n << 7n

// Control registers and EFER (SDM vol. 3, 2.5 and 2.2.1).
export const CR0_PE = 1n << 0n
export const CR0_MP = 1n << 1n
export const CR0_ET = 1n << 4n
export const CR0_NE = 1n << 5n
export const CR0_WP = 1n << 16n
export const CR0_AM = 1n << 18n
export const CR0_PG = 1n << 31n
export const CR4_PAE = 1n << 5n
export const EFER_LME = 1n << 8n
export const EFER_LMA = 1n << 10n
/** RFLAGS bit 1 is reserved and always 1; everything else clear (IF = 0, DF = 0 for rep stosb). */
export const RFLAGS_FIXED = 0x2n

// IA32_APIC_BASE at reset (SDM vol. 3, 11.4.4; KVM's kvm_lapic_reset()): base 0xfee00000, enabled,
// BSP set on the vCPU whose id is the VM's bsp_vcpu_id (0 unless KVM_SET_BOOT_CPU_ID changed it).
export const APIC_DEFAULT_BASE = 0xfee0_0000n
export const APIC_BASE_ENABLE = 1n << 11n
export const APIC_BASE_BSP = 1n << 8n

// Selectors, as kvm_util's KERNEL_CS, KERNEL_DS, KERNEL_TSS.
export const KERNEL_CS = 0x08
export const KERNEL_DS = 0x10
export const KERNEL_TSS = 0x18
/** GDT limit: five 8-byte slots (null, code, data, and the 16-byte TSS descriptor) minus one. */
export const GDT_LIMIT = 5 * 8 - 1
export const TSS_LIMIT = 0x67
export const IDT_LIMIT = 256 * 16 - 1

/** CS: 64-bit code (L = 1, D = 0), execute/read accessed (type 0xb), DPL 0. */
export const CODE64_SEGMENT: Readonly<Required<Segment>> = {
  base: 0n, limit: 0xffff_ffff, selector: KERNEL_CS, type: 0xb, present: 1, dpl: 0, db: 0, s: 1, l: 1, g: 1,
  avl: 0, unusable: 0, padding: 0,
}

/** DS, ES, FS, GS, SS: read/write accessed data (type 3), DPL 0. */
export const DATA_SEGMENT: Readonly<Required<Segment>> = {
  base: 0n, limit: 0xffff_ffff, selector: KERNEL_DS, type: 0x3, present: 1, dpl: 0, db: 1, s: 1, l: 0, g: 1,
  avl: 0, unusable: 0, padding: 0,
}

/** TR: a busy 64-bit TSS (system segment, type 0xb). KVM refuses to enter a guest without a usable TR. */
export const TSS_SEGMENT: Readonly<Required<Segment>> = {
  base: BigInt(TSS_GPA), limit: TSS_LIMIT, selector: KERNEL_TSS, type: 0xb, present: 1, dpl: 0, db: 0, s: 0, l: 0,
  g: 0, avl: 0, unusable: 0, padding: 0,
}

/** LDTR: unusable, as kvm_util's kvm_seg_set_unusable() leaves it. */
export const LDT_SEGMENT: Readonly<Required<Segment>> = {
  base: 0n, limit: 0, selector: 0, type: 0, present: 0, dpl: 0, db: 0, s: 0, l: 0, g: 0, avl: 0, unusable: 1,
  padding: 0,
}

/** The addresses of one vCPU's area. */
export interface VcpuArea {
  /** GPA of the area: code starts here. */
  gpa: bigint
  codeGpa: bigint
  lidtDescriptorsGpa: bigint
  /** Initial RSP: the area's end. */
  stackTop: bigint
}

/** The area of vCPU `vcpuId` (0..MAX_VCPU_ID). */
export function vcpuArea(vcpuId: number): VcpuArea {
  if (!Number.isInteger(vcpuId) || vcpuId < 0 || vcpuId > MAX_VCPU_ID) {
    throw new RangeError(`vCPU id ${vcpuId}: the boot slot has areas for ids 0..${MAX_VCPU_ID}`)
  }
  const gpa = BigInt(VCPU_AREAS_GPA + vcpuId * VCPU_AREA_SIZE)
  return {
    gpa,
    codeGpa: gpa + BigInt(CODE_OFFSET),
    lidtDescriptorsGpa: gpa + BigInt(LIDT_DESCRIPTORS_OFFSET),
    stackTop: gpa + BigInt(VCPU_AREA_SIZE),
  }
}

/**
 * The 8-byte code/data descriptor for `seg` as a GDT holds it (SDM vol. 3, 3.4.5), so that reloading a
 * selector from the GDT gives the same hidden state KVM_SET_SREGS installed.
 */
export function segmentDescriptor(seg: Required<Segment>): bigint {
  const base = BigInt(seg.base)
  const limit = BigInt(seg.g ? seg.limit >>> 12 : seg.limit)
  return (limit & 0xffffn) |
    ((base & 0xff_ffffn) << 16n) |
    (BigInt(seg.type & 0xf) << 40n) |
    (BigInt(seg.s & 1) << 44n) |
    (BigInt(seg.dpl & 3) << 45n) |
    (BigInt(seg.present & 1) << 47n) |
    (((limit >> 16n) & 0xfn) << 48n) |
    (BigInt(seg.avl & 1) << 52n) |
    (BigInt(seg.l & 1) << 53n) |
    (BigInt(seg.db & 1) << 54n) |
    (BigInt(seg.g & 1) << 55n) |
    (((base >> 24n) & 0xffn) << 56n)
}

/** The 16-byte system descriptor (TSS) of long mode, as [low, high] (SDM vol. 3, 8.2.3). */
export function systemDescriptor(seg: Required<Segment>): [bigint, bigint] {
  return [segmentDescriptor(seg), (BigInt(seg.base) >> 32n) & 0xffff_ffffn]
}

let shared: Uint8Array | undefined

/**
 * Bytes [0, VCPU_AREAS_GPA) of the boot slot: page tables, GDT, TSS and IDT. The same for every program
 * and vCPU; callers get a copy.
 */
export function sharedBootBytes(): Uint8Array {
  return sharedBootBytesView().slice()
}

/**
 * The same bytes without the copy: one instance for every program, which callers only read (the
 * compiler hands it out as the first of a program's writes, to be copied into guest memory).
 */
export function sharedBootBytesView(): Uint8Array {
  shared ??= buildShared()
  return shared
}

function buildShared(): Uint8Array {
  const bytes = new Uint8Array(VCPU_AREAS_GPA)
  const view = new DataView(bytes.buffer)
  const u64 = (gpa: number, v: bigint): void => view.setBigUint64(gpa, v, true)

  u64(PML4_GPA, BigInt(PDPT_GPA) | PTE_PRESENT | PTE_WRITABLE)
  for (let i = 0; i < PD_COUNT; i++) {
    const pd = PD_GPA + i * 0x1000
    u64(PDPT_GPA + i * 8, BigInt(pd) | PTE_PRESENT | PTE_WRITABLE)
    for (let j = 0; j < 512; j++) {
      const page = BigInt(i * 512 + j) * BigInt(LARGE_PAGE)
      u64(pd + j * 8, page | PTE_PRESENT | PTE_WRITABLE | PTE_LARGE)
    }
  }

  u64(GDT_GPA + KERNEL_CS, segmentDescriptor(CODE64_SEGMENT))
  u64(GDT_GPA + KERNEL_DS, segmentDescriptor(DATA_SEGMENT))
  const [tssLow, tssHigh] = systemDescriptor(TSS_SEGMENT)
  u64(GDT_GPA + KERNEL_TSS, tssLow)
  u64(GDT_GPA + KERNEL_TSS + 8, tssHigh)

  // 64-bit TSS (SDM vol. 3, figure 8-11): all stack pointers zero, no I/O permission bitmap (its
  // offset at byte 102 points past the limit).
  view.setUint16(TSS_GPA + 102, TSS_LIMIT + 1, true)
  return bytes
}

/** The 10-byte pseudo-descriptor lidt reads: limit u16, then base u64 (SDM vol. 2, "LGDT/LIDT"). */
export function pseudoDescriptor(base: bigint, limit: number): Uint8Array {
  const bytes = new Uint8Array(10)
  const view = new DataView(bytes.buffer)
  view.setUint16(0, limit, true)
  view.setBigUint64(2, base, true)
  return bytes
}

/** One vCPU's area: its code, the pseudo-descriptors of its `lidt` steps, a zeroed stack. */
export function vcpuAreaBytes(code: Uint8Array, lidtDescriptors: readonly { base: bigint; limit: number }[]): Uint8Array {
  if (code.length > CODE_SIZE) throw new RangeError(`guest code of ${code.length} bytes does not fit in ${CODE_SIZE}`)
  if (lidtDescriptors.length > LIDT_DESCRIPTORS_MAX) {
    throw new RangeError(`${lidtDescriptors.length} lidt descriptors do not fit in ${LIDT_DESCRIPTORS_MAX}`)
  }
  const bytes = new Uint8Array(VCPU_AREA_SIZE)
  bytes.set(code, CODE_OFFSET)
  lidtDescriptors.forEach((d, i) => bytes.set(pseudoDescriptor(d.base, d.limit), LIDT_DESCRIPTORS_OFFSET + i * LIDT_DESCRIPTOR_STRIDE))
  return bytes
}

/**
 * struct kvm_sregs for vCPU `vcpuId`: long mode with paging (CR0 PE|MP|ET|NE|WP|AM|PG, CR4 PAE, EFER
 * LME|LMA, CR3 the PML4), flat 64-bit segments, the TSS, the boot GDT and the zeroed IDT, as kvm_util's
 * vcpu_init_sregs() sets them. KVM checks this combination in kvm_is_valid_sregs(): with EFER.LME and
 * CR0.PG it wants CR4.PAE and EFER.LMA.
 */
export function initialSregs(vcpuId: number): Sregs {
  vcpuArea(vcpuId)
  return {
    cs: CODE64_SEGMENT,
    ds: DATA_SEGMENT, es: DATA_SEGMENT, fs: DATA_SEGMENT, gs: DATA_SEGMENT, ss: DATA_SEGMENT,
    tr: TSS_SEGMENT,
    ldt: LDT_SEGMENT,
    gdt: { base: BigInt(GDT_GPA), limit: GDT_LIMIT },
    idt: { base: BigInt(IDT_GPA), limit: IDT_LIMIT },
    cr0: CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_PG,
    cr2: 0n,
    cr3: BigInt(PML4_GPA),
    cr4: CR4_PAE,
    cr8: 0n,
    efer: EFER_LME | EFER_LMA,
    // The value KVM already holds after KVM_CREATE_VCPU, so setting it changes nothing.
    apicBase: APIC_DEFAULT_BASE | APIC_BASE_ENABLE | (vcpuId === 0 ? APIC_BASE_BSP : 0n),
    interruptBitmap: [0n, 0n, 0n, 0n],
  }
}

/** struct kvm_regs for vCPU `vcpuId`: RIP at its code, RSP at its stack top, RFLAGS 0x2, the rest 0. */
export function initialRegs(vcpuId: number): Regs {
  const area = vcpuArea(vcpuId)
  return { rip: area.codeGpa, rsp: area.stackTop, rflags: RFLAGS_FIXED }
}

/** initialSregs() as the 312 bytes of KVM_SET_SREGS. */
export function initialSregsBytes(vcpuId: number): Uint8Array {
  return encodeSregs(initialSregs(vcpuId))
}

/** initialRegs() as the 144 bytes of KVM_SET_REGS. */
export function initialRegsBytes(vcpuId: number): Uint8Array {
  return encodeRegs(initialRegs(vcpuId))
}
