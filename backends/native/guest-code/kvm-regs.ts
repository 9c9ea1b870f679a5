// arch/x86/include/uapi/asm/kvm.h: struct kvm_regs (KVM_GET/SET_REGS) and struct kvm_sregs
// (KVM_GET/SET_SREGS) with its members struct kvm_segment and struct kvm_dtable.
//
// These are x86 UAPI layouts and would sit in harness/uapi/ beside kvm-run.ts; they live here while the
// native backend's guest code is their only user. kvm_sregs nests structs, which layout.ts does not
// model, so it is three tables: kvm_segment and kvm_dtable, the offsets at which kvm_sregs holds them,
// and a view of kvm_sregs' scalar tail (control registers, EFER, APIC base, interrupt bitmap).

import { decodeStruct, defineLayout, writeStruct, type StructInput, type StructValue } from '../../../harness/uapi/layout.ts'

/** struct kvm_regs: 18 __u64, 144 bytes. */
export const kvm_regs = defineLayout('kvm_regs', 144, {
  rax: { offset: 0, type: 'u64' }, //      __u64 rax, rbx, rcx, rdx;
  rbx: { offset: 8, type: 'u64' },
  rcx: { offset: 16, type: 'u64' },
  rdx: { offset: 24, type: 'u64' },
  rsi: { offset: 32, type: 'u64' }, //     __u64 rsi, rdi, rsp, rbp;
  rdi: { offset: 40, type: 'u64' },
  rsp: { offset: 48, type: 'u64' },
  rbp: { offset: 56, type: 'u64' },
  r8: { offset: 64, type: 'u64' }, //      __u64 r8,  r9,  r10, r11;
  r9: { offset: 72, type: 'u64' },
  r10: { offset: 80, type: 'u64' },
  r11: { offset: 88, type: 'u64' },
  r12: { offset: 96, type: 'u64' }, //     __u64 r12, r13, r14, r15;
  r13: { offset: 104, type: 'u64' },
  r14: { offset: 112, type: 'u64' },
  r15: { offset: 120, type: 'u64' },
  rip: { offset: 128, type: 'u64' }, //    __u64 rip, rflags;
  rflags: { offset: 136, type: 'u64' },
})

/** struct kvm_segment: the hidden part of a segment register, 24 bytes. */
export const kvm_segment = defineLayout('kvm_segment', 24, {
  base: { offset: 0, type: 'u64' }, //        __u64 base;
  limit: { offset: 8, type: 'u32' }, //       __u32 limit;
  selector: { offset: 12, type: 'u16' }, //   __u16 selector;
  type: { offset: 14, type: 'u8' }, //        __u8  type;
  present: { offset: 15, type: 'u8' }, //     __u8  present, dpl, db, s, l, g, avl;
  dpl: { offset: 16, type: 'u8' },
  db: { offset: 17, type: 'u8' },
  s: { offset: 18, type: 'u8' },
  l: { offset: 19, type: 'u8' },
  g: { offset: 20, type: 'u8' },
  avl: { offset: 21, type: 'u8' },
  unusable: { offset: 22, type: 'u8' }, //    __u8  unusable;
  padding: { offset: 23, type: 'u8' }, //     __u8  padding;
})

/** struct kvm_dtable: a descriptor-table register (GDTR, IDTR), 16 bytes. */
export const kvm_dtable = defineLayout('kvm_dtable', 16, {
  base: { offset: 0, type: 'u64' }, //                 __u64 base;
  limit: { offset: 8, type: 'u16' }, //                __u16 limit;
  padding: { offset: 10, type: 'u16', count: 3 }, //   __u16 padding[3];
})

/** Where struct kvm_sregs holds its struct kvm_segment members, in declaration order. */
export const KVM_SREGS_SEGMENTS = {
  cs: 0, ds: 24, es: 48, fs: 72, gs: 96, ss: 120, tr: 144, ldt: 168,
} as const

/** Where struct kvm_sregs holds its struct kvm_dtable members. */
export const KVM_SREGS_DTABLES = { gdt: 192, idt: 208 } as const

/** KVM_NR_INTERRUPTS: the interrupt bitmap has (256 + 63) / 64 = 4 words. */
export const KVM_NR_INTERRUPTS = 256

/** struct kvm_sregs (312 bytes), its scalar members only; bytes 0..223 are the segments and tables above. */
export const kvm_sregs = defineLayout('kvm_sregs', 312, {
  cr0: { offset: 224, type: 'u64' }, //        __u64 cr0, cr2, cr3, cr4, cr8;
  cr2: { offset: 232, type: 'u64' },
  cr3: { offset: 240, type: 'u64' },
  cr4: { offset: 248, type: 'u64' },
  cr8: { offset: 256, type: 'u64' },
  efer: { offset: 264, type: 'u64' }, //       __u64 efer;
  apicBase: { offset: 272, type: 'u64' }, //   __u64 apic_base;
  interruptBitmap: { offset: 280, type: 'u64', count: Math.floor((KVM_NR_INTERRUPTS + 63) / 64) },
})

export type Regs = StructInput<typeof kvm_regs>
export type Segment = StructInput<typeof kvm_segment>
export type DTable = StructInput<typeof kvm_dtable>
export type SegmentName = keyof typeof KVM_SREGS_SEGMENTS
export type DTableName = keyof typeof KVM_SREGS_DTABLES

/** struct kvm_sregs as a value: absent members are zero. */
export type Sregs = StructInput<typeof kvm_sregs> & { [K in SegmentName]?: Segment } & { [K in DTableName]?: DTable }

export type SregsValue = StructValue<typeof kvm_sregs> &
  { [K in SegmentName]: StructValue<typeof kvm_segment> } &
  { [K in DTableName]: StructValue<typeof kvm_dtable> }

/** The 144 bytes KVM_SET_REGS takes. */
export function encodeRegs(regs: Regs): Uint8Array {
  const bytes = new Uint8Array(kvm_regs.size)
  writeStruct(kvm_regs, regs, bytes)
  return bytes
}

/** The 312 bytes KVM_SET_SREGS takes. */
export function encodeSregs(sregs: Sregs): Uint8Array {
  const bytes = new Uint8Array(kvm_sregs.size)
  const { cs, ds, es, fs, gs, ss, tr, ldt, gdt, idt, ...scalars } = sregs
  const segments: Record<SegmentName, Segment | undefined> = { cs, ds, es, fs, gs, ss, tr, ldt }
  for (const [name, offset] of Object.entries(KVM_SREGS_SEGMENTS)) {
    const seg = segments[name as SegmentName]
    if (seg !== undefined) writeStruct(kvm_segment, seg, bytes, offset)
  }
  if (gdt !== undefined) writeStruct(kvm_dtable, gdt, bytes, KVM_SREGS_DTABLES.gdt)
  if (idt !== undefined) writeStruct(kvm_dtable, idt, bytes, KVM_SREGS_DTABLES.idt)
  writeStruct(kvm_sregs, scalars, bytes)
  return bytes
}

/** Reads back what KVM_GET_SREGS returned (or what encodeSregs() produced). */
export function decodeSregs(bytes: Uint8Array): SregsValue {
  const out: Record<string, unknown> = { ...decodeStruct(kvm_sregs, bytes) }
  for (const [name, offset] of Object.entries(KVM_SREGS_SEGMENTS)) out[name] = decodeStruct(kvm_segment, bytes, offset)
  for (const [name, offset] of Object.entries(KVM_SREGS_DTABLES)) out[name] = decodeStruct(kvm_dtable, bytes, offset)
  return out as SregsValue
}

/** Reads back what KVM_GET_REGS returned (or what encodeRegs() produced). */
export function decodeRegs(bytes: Uint8Array): StructValue<typeof kvm_regs> {
  return decodeStruct(kvm_regs, bytes)
}
