// The boot memslot's layout, its page tables walked as the MMU walks them, its descriptor tables, and the
// initial KVM_SET_SREGS/KVM_SET_REGS state, pinned with literals.

import { describe, expect, test } from 'vitest'
import fc from 'fast-check'
import {
  BOOT_SLOT_SIZE, CODE64_SEGMENT, CODE_SIZE, DATA_SEGMENT, GDT_GPA, IDENTITY_MAP_END, IDT_GPA, LDT_SEGMENT,
  LIDT_DESCRIPTORS_OFFSET, MAX_VCPU_ID, PD_COUNT, PD_GPA, PDPT_GPA, PML4_GPA, STACK_OFFSET, TSS_GPA, TSS_SEGMENT,
  VCPU_AREAS_GPA, VCPU_AREA_SIZE, initialRegsBytes, initialSregsBytes, pseudoDescriptor, sharedBootBytes, vcpuArea,
  vcpuAreaBytes,
} from './boot-image.ts'
import { decodeRegs, decodeSregs } from './kvm-regs.ts'

const image = sharedBootBytes()
const view = new DataView(image.buffer)
const u64 = (gpa: number | bigint): bigint => view.getBigUint64(Number(gpa), true)

/** A 4-level walk (SDM vol. 3, 4.5) over the boot image: the GPA `gva` maps to, or null if not present. */
function walk(gva: bigint): bigint | null {
  const index = (level: number): bigint => (gva >> BigInt(12 + 9 * level)) & 0x1ffn
  const frame = (entry: bigint): bigint => entry & 0x000f_ffff_ffff_f000n
  const pml4e = u64(BigInt(PML4_GPA) + index(3) * 8n)
  if ((pml4e & 1n) === 0n) return null
  const pdpte = u64(frame(pml4e) + index(2) * 8n)
  if ((pdpte & 1n) === 0n) return null
  if ((pdpte & 0x80n) !== 0n) throw new Error('unexpected 1 GiB page')
  const pde = u64(frame(pdpte) + index(1) * 8n)
  if ((pde & 1n) === 0n) return null
  if ((pde & 0x80n) === 0n) throw new Error('unexpected 4 KiB page table')
  return (pde & 0x000f_ffff_ffe0_0000n) | (gva & 0x1f_ffffn)
}

describe('boot slot layout', () => {
  test('the documented addresses', () => {
    expect({ BOOT_SLOT_SIZE, PML4_GPA, PDPT_GPA, PD_GPA, PD_COUNT, GDT_GPA, TSS_GPA, IDT_GPA, VCPU_AREAS_GPA, VCPU_AREA_SIZE }).toEqual({
      BOOT_SLOT_SIZE: 0x20_0000, PML4_GPA: 0x1000, PDPT_GPA: 0x2000, PD_GPA: 0x3000, PD_COUNT: 64,
      GDT_GPA: 0x4_3000, TSS_GPA: 0x4_4000, IDT_GPA: 0x4_5000, VCPU_AREAS_GPA: 0x8_0000, VCPU_AREA_SIZE: 0x4000,
    })
    expect(IDENTITY_MAP_END).toBe(64n << 30n)
    expect([CODE_SIZE, LIDT_DESCRIPTORS_OFFSET, STACK_OFFSET]).toEqual([0x3000, 0x3000, 0x3800])
    expect(MAX_VCPU_ID).toBe(95)
  })

  test('the regions are page-aligned, in order, and inside the slot', () => {
    const regions = [
      [PML4_GPA, 0x1000], [PDPT_GPA, 0x1000], [PD_GPA, PD_COUNT * 0x1000], [GDT_GPA, 0x1000], [TSS_GPA, 0x1000],
      [IDT_GPA, 0x1000], [VCPU_AREAS_GPA, (MAX_VCPU_ID + 1) * VCPU_AREA_SIZE],
    ] as const
    let end = 0x1000
    for (const [gpa, size] of regions) {
      expect(gpa % 0x1000).toBe(0)
      expect(gpa).toBeGreaterThanOrEqual(end)
      end = gpa + size
    }
    expect(end).toBe(BOOT_SLOT_SIZE)
    expect(image).toHaveLength(VCPU_AREAS_GPA)
  })

  test('vCPU areas: 0x80000 + id * 0x4000, code first, stack top at the end', () => {
    expect(vcpuArea(0)).toEqual({ gpa: 0x80000n, codeGpa: 0x80000n, lidtDescriptorsGpa: 0x83000n, stackTop: 0x84000n })
    expect(vcpuArea(95)).toEqual({ gpa: 0x1fc000n, codeGpa: 0x1fc000n, lidtDescriptorsGpa: 0x1ff000n, stackTop: 0x200000n })
    expect(() => vcpuArea(96)).toThrow(RangeError)
    expect(() => vcpuArea(-1)).toThrow(RangeError)
    expect(() => vcpuArea(1.5)).toThrow(RangeError)
  })

  test('sharedBootBytes() hands out copies', () => {
    const a = sharedBootBytes()
    a[PML4_GPA] = 0
    expect(sharedBootBytes()[PML4_GPA]).toBe(0x03)
  })
})

describe('page tables: GVA = GPA for [0, 64 GiB) with 2 MiB pages', () => {
  test('PML4[0] -> PDPT, present|writable; the other 511 entries empty', () => {
    expect(u64(PML4_GPA)).toBe(0x2003n)
    for (let i = 1; i < 512; i++) expect(u64(PML4_GPA + i * 8)).toBe(0n)
  })

  test('PDPT[i] -> PD i for i < 64, present|writable; the rest empty', () => {
    expect(u64(PDPT_GPA)).toBe(0x3003n)
    expect(u64(PDPT_GPA + 63 * 8)).toBe(0x42003n)
    for (let i = 0; i < 512; i++) {
      expect(u64(PDPT_GPA + i * 8)).toBe(i < 64 ? BigInt(PD_GPA + i * 0x1000) | 0x3n : 0n)
    }
  })

  test('PD i entry j maps (512 i + j) * 2 MiB, present|writable|PS', () => {
    expect(u64(PD_GPA)).toBe(0x83n)
    expect(u64(PD_GPA + 8)).toBe(0x20_0083n)
    expect(u64(PD_GPA + 0x1000)).toBe(0x4000_0083n)
    expect(u64(PD_GPA + 64 * 0x1000 - 8)).toBe(0xf_ffe0_0083n)
    for (let i = 0; i < 64; i++) {
      for (let j = 0; j < 512; j++) {
        const entry = u64(PD_GPA + i * 0x1000 + j * 8)
        if (entry !== (BigInt(i * 512 + j) << 21n | 0x83n)) expect.fail(`PD ${i} entry ${j} is 0x${entry.toString(16)}`)
      }
    }
  })

  test('property: a walk maps every GVA below 64 GiB to itself and nothing above', () => {
    fc.assert(fc.property(fc.bigInt({ min: 0n, max: IDENTITY_MAP_END - 1n }), (gva) => {
      expect(walk(gva)).toBe(gva)
    }))
    fc.assert(fc.property(fc.bigInt({ min: IDENTITY_MAP_END, max: (1n << 47n) - 1n }), (gva) => {
      expect(walk(gva)).toBeNull()
    }))
    expect(walk(0xc000_0000n)).toBe(0xc000_0000n)
    expect(walk(IDENTITY_MAP_END - 1n)).toBe(IDENTITY_MAP_END - 1n)
  })
})

describe('descriptor tables', () => {
  test('GDT: null, 0x08 64-bit code, 0x10 data, 0x18 busy 64-bit TSS at 0x44000', () => {
    expect(u64(GDT_GPA)).toBe(0n)
    expect(u64(GDT_GPA + 0x08)).toBe(0x00af_9b00_0000_ffffn)
    expect(u64(GDT_GPA + 0x10)).toBe(0x00cf_9300_0000_ffffn)
    expect(u64(GDT_GPA + 0x18)).toBe(0x0000_8b04_4000_0067n)
    expect(u64(GDT_GPA + 0x20)).toBe(0n)
    expect(image.subarray(GDT_GPA + 0x28, GDT_GPA + 0x1000).every((b) => b === 0)).toBe(true)
  })

  test('TSS: zero stack pointers, I/O bitmap offset past the limit', () => {
    expect(view.getUint16(TSS_GPA + 102, true)).toBe(0x68)
    expect(image.subarray(TSS_GPA, TSS_GPA + 102).every((b) => b === 0)).toBe(true)
  })

  test('IDT: 4 KiB of zeros, so any exception triple-faults', () => {
    expect(image.subarray(IDT_GPA, IDT_GPA + 0x1000).every((b) => b === 0)).toBe(true)
  })

  test('lidt pseudo-descriptor: limit u16 then base u64', () => {
    expect(Array.from(pseudoDescriptor(0xc000_0000n, 0xfff))).toEqual([0xff, 0x0f, 0, 0, 0, 0xc0, 0, 0, 0, 0])
  })

  test('vcpuAreaBytes: code at 0, descriptors at 0x3000, 16 bytes apart', () => {
    const area = vcpuAreaBytes(Uint8Array.of(0xf4), [{ base: 0x1000n, limit: 7 }, { base: 0x2000n, limit: 0xfff }])
    expect(area).toHaveLength(0x4000)
    expect(area[0]).toBe(0xf4)
    expect(Array.from(area.subarray(0x3000, 0x3020))).toEqual([
      7, 0, 0x00, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
      0xff, 0x0f, 0x00, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ])
    expect(() => vcpuAreaBytes(new Uint8Array(CODE_SIZE + 1), [])).toThrow(RangeError)
  })
})

describe('initial registers', () => {
  test('sregs: long mode with paging, flat segments, TSS, boot GDT and IDT', () => {
    const s = decodeSregs(initialSregsBytes(0))
    expect(s.cs).toEqual({ ...CODE64_SEGMENT, base: 0n })
    expect(s.cs).toMatchObject({ selector: 0x08, type: 0xb, s: 1, l: 1, db: 0, present: 1, dpl: 0, g: 1, limit: 0xffff_ffff })
    for (const seg of [s.ds, s.es, s.fs, s.gs, s.ss]) {
      expect(seg).toEqual({ ...DATA_SEGMENT, base: 0n })
      expect(seg).toMatchObject({ selector: 0x10, type: 0x3, s: 1, present: 1 })
    }
    expect(s.tr).toEqual({ ...TSS_SEGMENT, base: 0x44000n })
    expect(s.tr).toMatchObject({ selector: 0x18, type: 0xb, s: 0, present: 1, limit: 0x67, unusable: 0 })
    expect(s.ldt).toEqual({ ...LDT_SEGMENT, base: 0n })
    expect(s.gdt).toEqual({ base: 0x43000n, limit: 0x27, padding: [0, 0, 0] })
    expect(s.idt).toEqual({ base: 0x45000n, limit: 0xfff, padding: [0, 0, 0] })
    expect(s.cr0).toBe(0x8005_0033n) // PE MP ET NE WP AM PG
    expect(s.cr2).toBe(0n)
    expect(s.cr3).toBe(0x1000n)
    expect(s.cr4).toBe(0x20n) // PAE
    expect(s.cr8).toBe(0n)
    expect(s.efer).toBe(0x500n) // LME LMA
    expect(s.apicBase).toBe(0xfee0_0900n)
    expect(s.interruptBitmap).toEqual([0n, 0n, 0n, 0n])
  })

  test('sregs of a vCPU other than 0: apic_base without BSP, nothing else differs', () => {
    const zero = initialSregsBytes(0)
    const one = initialSregsBytes(1)
    expect(decodeSregs(one).apicBase).toBe(0xfee0_0800n)
    expect(Array.from(one.subarray(0, 272))).toEqual(Array.from(zero.subarray(0, 272)))
  })

  test('regs: RIP at the vCPU\'s code, RSP at its stack top, RFLAGS 0x2, everything else 0', () => {
    expect(decodeRegs(initialRegsBytes(0))).toEqual({
      rax: 0n, rbx: 0n, rcx: 0n, rdx: 0n, rsi: 0n, rdi: 0n, rsp: 0x84000n, rbp: 0n,
      r8: 0n, r9: 0n, r10: 0n, r11: 0n, r12: 0n, r13: 0n, r14: 0n, r15: 0n, rip: 0x80000n, rflags: 0x2n,
    })
    expect(decodeRegs(initialRegsBytes(3))).toMatchObject({ rip: 0x8c000n, rsp: 0x90000n })
  })
})
