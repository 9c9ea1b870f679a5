// struct kvm_regs and struct kvm_sregs (arch/x86/include/uapi/asm/kvm.h) pinned offset by offset, and
// the encoders' round trips.

import { describe, expect, test } from 'vitest'
import fc from 'fast-check'
import { holes, type StructLayout } from '../../../harness/uapi/layout.ts'
import { structArbitrary } from '../../../harness/uapi/layout-arbitrary.ts'
import {
  KVM_SREGS_DTABLES, KVM_SREGS_SEGMENTS, decodeRegs, decodeSregs, encodeRegs, encodeSregs, kvm_dtable, kvm_regs,
  kvm_segment, kvm_sregs, type SregsValue,
} from './kvm-regs.ts'

function table(layout: StructLayout): Record<string, (number | string)[]> {
  return Object.fromEntries(Object.entries(layout.fields).map(([k, f]) =>
    [k, f.count === undefined ? [f.offset, f.type] : [f.offset, f.type, f.count]]))
}

describe('kvm_regs', () => {
  test('144 bytes: rax rbx rcx rdx rsi rdi rsp rbp r8..r15 rip rflags, 8 bytes apart', () => {
    expect(kvm_regs.size).toBe(144)
    expect(table(kvm_regs)).toEqual({
      rax: [0, 'u64'], rbx: [8, 'u64'], rcx: [16, 'u64'], rdx: [24, 'u64'],
      rsi: [32, 'u64'], rdi: [40, 'u64'], rsp: [48, 'u64'], rbp: [56, 'u64'],
      r8: [64, 'u64'], r9: [72, 'u64'], r10: [80, 'u64'], r11: [88, 'u64'],
      r12: [96, 'u64'], r13: [104, 'u64'], r14: [112, 'u64'], r15: [120, 'u64'],
      rip: [128, 'u64'], rflags: [136, 'u64'],
    })
    expect(holes(kvm_regs)).toEqual([])
  })

  test('property: round trip', () => {
    fc.assert(fc.property(structArbitrary(kvm_regs), (regs) => {
      expect(decodeRegs(encodeRegs(regs))).toEqual(regs)
    }))
  })
})

describe('kvm_sregs', () => {
  test('kvm_segment: base 0, limit 8, selector 12, type 14, present..unusable 15..22, padding 23', () => {
    expect(kvm_segment.size).toBe(24)
    expect(table(kvm_segment)).toEqual({
      base: [0, 'u64'], limit: [8, 'u32'], selector: [12, 'u16'], type: [14, 'u8'], present: [15, 'u8'],
      dpl: [16, 'u8'], db: [17, 'u8'], s: [18, 'u8'], l: [19, 'u8'], g: [20, 'u8'], avl: [21, 'u8'],
      unusable: [22, 'u8'], padding: [23, 'u8'],
    })
    expect(holes(kvm_segment)).toEqual([])
  })

  test('kvm_dtable: base 0, limit 8, padding[3] 10', () => {
    expect(kvm_dtable.size).toBe(16)
    expect(table(kvm_dtable)).toEqual({ base: [0, 'u64'], limit: [8, 'u16'], padding: [10, 'u16', 3] })
    expect(holes(kvm_dtable)).toEqual([])
  })

  test('312 bytes: eight segments, gdt, idt, cr0 cr2 cr3 cr4 cr8 efer apic_base, interrupt_bitmap[4]', () => {
    expect(KVM_SREGS_SEGMENTS).toEqual({ cs: 0, ds: 24, es: 48, fs: 72, gs: 96, ss: 120, tr: 144, ldt: 168 })
    expect(KVM_SREGS_DTABLES).toEqual({ gdt: 192, idt: 208 })
    expect(kvm_sregs.size).toBe(312)
    expect(table(kvm_sregs)).toEqual({
      cr0: [224, 'u64'], cr2: [232, 'u64'], cr3: [240, 'u64'], cr4: [248, 'u64'], cr8: [256, 'u64'],
      efer: [264, 'u64'], apicBase: [272, 'u64'], interruptBitmap: [280, 'u64', 4],
    })
    // The scalar view leaves exactly the nested structs uncovered: 8 x 24 + 2 x 16 = 224 bytes.
    expect(holes(kvm_sregs)).toEqual([[0, 224]])
  })

  test('each member lands at its offset', () => {
    const bytes = encodeSregs({ tr: { selector: 0x18 }, idt: { limit: 0xfff }, cr3: 0x1000n, apicBase: 0xfee00900n })
    const view = new DataView(bytes.buffer)
    expect(view.getUint16(144 + 12, true)).toBe(0x18)
    expect(view.getUint16(208 + 8, true)).toBe(0xfff)
    expect(view.getBigUint64(240, true)).toBe(0x1000n)
    expect(view.getBigUint64(272, true)).toBe(0xfee00900n)
    // Non-zero bytes: 0x18; 0xff 0x0f; 0x10; 0x09 0xe0 0xfe.
    expect(bytes.filter((b) => b !== 0)).toHaveLength(1 + 2 + 1 + 3)
  })

  test('property: round trip', () => {
    const segment = structArbitrary(kvm_segment)
    const dtable = structArbitrary(kvm_dtable)
    const sregs = fc.record({
      scalars: structArbitrary(kvm_sregs),
      cs: segment, ds: segment, es: segment, fs: segment, gs: segment, ss: segment, tr: segment, ldt: segment,
      gdt: dtable, idt: dtable,
    }).map(({ scalars, ...rest }) => ({ ...scalars, ...rest }) as SregsValue)
    fc.assert(fc.property(sregs, (s) => {
      const bytes = encodeSregs(s)
      expect(bytes).toHaveLength(312)
      expect(decodeSregs(bytes)).toEqual(s)
    }))
  })
})
