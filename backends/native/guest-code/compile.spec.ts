// compileGuestProgram(): the code of small programs pinned byte for byte (and as GNU objdump listed it),
// where everything lands in the boot slot, the refusal of invalid programs, and a property over arbitrary
// valid programs: compiling is deterministic, the code decodes into the encoder's instructions only, and
// every branch lands on an instruction boundary (a step's start for `jump`).

import { describe, expect, test } from 'vitest'
import fc from 'fast-check'
import type { GuestProgram, GuestStep } from '../../../harness/guest-program.ts'
import {
  BOOT_SLOT_SIZE, IDENTITY_MAP_END, LIDT_DESCRIPTORS_MAX, VCPU_AREAS_GPA, initialRegsBytes, initialSregsBytes,
  sharedBootBytes,
} from './boot-image.ts'
import { compileGuestProgram, stepAt, type CompiledGuest } from './compile.ts'
import { decode, disassemble } from './decode.ts'

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ')
}

/** Byte equality without the matcher's element-by-element diff, which takes seconds on 2 MiB. */
function same(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length))
}

/** Two compilations are equal: every byte buffer and every address. */
function expectSameCompilation(a: CompiledGuest, b: CompiledGuest): void {
  expect(same(a.bootSlot.bytes, b.bootSlot.bytes)).toBe(true)
  expect({ ...a.bootSlot, bytes: null }).toEqual({ ...b.bootSlot, bytes: null })
  expect(a.writes.map((w) => w.gpa)).toEqual(b.writes.map((w) => w.gpa))
  a.writes.forEach((w, i) => expect(same(w.bytes, b.writes[i]!.bytes)).toBe(true))
  expect(hex(a.code)).toBe(hex(b.code))
  expect(hex(a.regs)).toBe(hex(b.regs))
  expect(hex(a.sregs)).toBe(hex(b.sregs))
  expect(a.codeGpa).toBe(b.codeGpa)
  expect(a.labels).toEqual(b.labels)
}

describe('compileGuestProgram: code', () => {
  test('[signal port 0x10 value 1, hlt], byte by byte', () => {
    const c = compileGuestProgram({ steps: [{ op: 'signal', port: 0x10, value: 1 }, { op: 'hlt' }] })
    expect(hex(c.code)).toBe([
      'ba 10 00 00 00', //   step 0: mov edx, 0x10   (the port)
      'b8 01 00 00 00', //           mov eax, 0x1    (the 32-bit value)
      'ef', //                       out dx, eax     (KVM_EXIT_IO, out, size 4, count 1)
      'f4', //               step 1: hlt             (KVM_EXIT_HLT)
      'f4', //               end:    hlt
      'e9 fa ff ff ff', //           jmp end         (-6: back to the hlt above)
    ].join(' '))
    expect(c.codeGpa).toBe(0x80000n)
    expect(c.labels).toEqual({ steps: [0x80000n, 0x8000bn], halt: 0x8000cn, end: 0x80012n })
  })

  test('the empty program is the final hlt loop', () => {
    const c = compileGuestProgram({ steps: [] })
    expect(hex(c.code)).toBe('f4 e9 fa ff ff ff')
    expect(c.labels).toEqual({ steps: [], halt: 0x80000n, end: 0x80006n })
  })

  // Listed by `objdump -D -b binary -mi386:x86-64 -M intel --adjust-vma=0x80000` from the compiled bytes
  // (the bytes column left out); disassemble() prints the same.
  test('every kind of step, as GNU objdump lists it', () => {
    const program: GuestProgram = {
      steps: [
        { op: 'lidt', base: 0xc000_0000, limit: 0xfff }, //                                       0
        { op: 'fill', gva: 0xc000_0000, length: 4096, byte: 0 }, //                                1
        { op: 'write', gva: 0xc000_0000, value: 1 }, //                                            2
        { op: 'write', gva: 0xc000_0008, width: 2 }, //                                            3
        { op: 'read', gva: 0xc000_0000, width: 1 }, //                                             4
        { op: 'spin_while_eq', gva: 0xc000_0000, value: 1 }, //                                    5
        { op: 'signal', port: 0x10 }, //                                                           6
        { op: 'touch_pages', gva: 0x1_0000_0000n, pages: 16, stride: 4096, write: true, value: 0x0123456789abcdefn }, // 7
        { op: 'check', gva: 0xc000_0000, length: 4096, byte: 0 }, //                               8
        { op: 'hlt' }, //                                                                          9
        { op: 'jump', to: 5 }, //                                                                  10
      ],
    }
    const c = compileGuestProgram(program)
    expect(disassemble(c.code, c.codeGpa)).toBe(`\
   80000:	mov    esi,0x83000
   80005:	lidt   [rsi]
   80008:	mov    edi,0xc0000000
   8000d:	mov    ecx,0x1000
   80012:	mov    eax,0x0
   80017:	rep stos BYTE PTR es:[rdi],al
   80019:	mov    esi,0xc0000000
   8001e:	mov    eax,0x1
   80023:	mov    QWORD PTR [rsi],rax
   80026:	mov    esi,0xc0000008
   8002b:	mov    WORD PTR [rsi],bx
   8002e:	mov    esi,0xc0000000
   80033:	mov    ebx,0x0
   80038:	mov    bl,BYTE PTR [rsi]
   8003a:	mov    esi,0xc0000000
   8003f:	mov    eax,0x1
   80044:	mov    rbx,QWORD PTR [rsi]
   80047:	cmp    rbx,rax
   8004a:	je     0x80044
   80050:	mov    edx,0x10
   80055:	mov    eax,ebx
   80057:	out    dx,eax
   80058:	movabs rsi,0x100000000
   80062:	mov    ecx,0x10
   80067:	mov    edx,0x1000
   8006c:	movabs rax,0x123456789abcdef
   80076:	mov    QWORD PTR [rsi],rax
   80079:	add    rsi,rdx
   8007c:	sub    rcx,0x1
   80080:	jne    0x80076
   80086:	mov    ebx,0x0
   8008b:	mov    esi,0xc0000000
   80090:	mov    ecx,0x1000
   80095:	cmp    BYTE PTR [rsi],0x0
   80098:	je     0x800a2
   8009e:	add    rbx,0x1
   800a2:	add    rsi,0x1
   800a6:	sub    rcx,0x1
   800aa:	jne    0x80095
   800b0:	hlt
   800b1:	jmp    0x8003a
   800b6:	hlt
   800b7:	jmp    0x800b6`)
    expect(c.labels.steps).toEqual([
      0x80000n, 0x80008n, 0x80019n, 0x80026n, 0x8002en, 0x8003an, 0x80050n, 0x80058n, 0x80086n, 0x800b0n, 0x800b1n,
    ])
    expect(c.labels.halt).toBe(0x800b6n)
  })

  test('read widths: 8 and 4 load directly, 2 and 1 clear acc first', () => {
    const listing = (width: 1 | 2 | 4 | 8): string[] =>
      decode(compileGuestProgram({ steps: [{ op: 'read', gva: 0x1000, width }] }).code).slice(1, -2).map((i) => i.text)
    expect(listing(8)).toEqual(['mov    rbx,QWORD PTR [rsi]'])
    expect(listing(4)).toEqual(['mov    ebx,DWORD PTR [rsi]'])
    expect(listing(2)).toEqual(['mov    ebx,0x0', 'mov    bx,WORD PTR [rsi]'])
    expect(listing(1)).toEqual(['mov    ebx,0x0', 'mov    bl,BYTE PTR [rsi]'])
  })

  test('a read touch_pages pass loads into acc; 0 pages and 0-length checks emit no loop', () => {
    const read = compileGuestProgram({ steps: [{ op: 'touch_pages', gva: 0, pages: 2, stride: 8, write: false, value: 0 }] })
    expect(decode(read.code).map((i) => i.text).slice(0, 7)).toEqual([
      'mov    esi,0x0', 'mov    ecx,0x2', 'mov    edx,0x8', 'mov    rbx,QWORD PTR [rsi]', 'add    rsi,rdx',
      'sub    rcx,0x1', 'jne    0xf', // back to the load at 3 x 5 bytes
    ])
    const none = compileGuestProgram({ steps: [
      { op: 'touch_pages', gva: 0, pages: 0, stride: 8, write: true, value: 0 },
      { op: 'check', gva: 0, length: 0, byte: 0 },
    ] })
    expect(decode(none.code).map((i) => i.text)).toEqual(['mov    ebx,0x0', 'hlt', 'jmp    0x5'])
    expect(none.labels.steps).toEqual([0x80000n, 0x80000n])
  })
})

describe('compileGuestProgram: the boot slot and registers', () => {
  const program: GuestProgram = { steps: [{ op: 'lidt', base: 0, limit: 0 }, { op: 'lidt', base: 0xc000_0000, limit: 0xfff }] }

  test('slot 0 at GPA 0, 2 MiB: the shared tables, then this vCPU\'s code and lidt descriptors', () => {
    const c = compileGuestProgram(program, { vcpuId: 2 })
    expect(c.bootSlot.slot).toBe(0)
    expect(c.bootSlot.gpa).toBe(0n)
    expect(c.bootSlot.size).toBe(BigInt(BOOT_SLOT_SIZE))
    expect(c.bootSlot.bytes).toHaveLength(BOOT_SLOT_SIZE)
    expect(same(c.bootSlot.bytes.subarray(0, VCPU_AREAS_GPA), sharedBootBytes())).toBe(true)
    expect(c.codeGpa).toBe(0x88000n)
    expect(c.bootSlot.bytes.subarray(0x88000, 0x88000 + c.code.length)).toEqual(c.code)
    expect(hex(c.bootSlot.bytes.subarray(0x8b000, 0x8b020))).toBe(
      '00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 ff 0f 00 00 00 c0 00 00 00 00 00 00 00 00 00 00')
    expect(decode(c.code).map((i) => i.text).slice(0, 4)).toEqual([
      'mov    esi,0x8b000', 'lidt   [rsi]', 'mov    esi,0x8b010', 'lidt   [rsi]',
    ])
    // Nothing outside the shared part and this vCPU's area.
    expect(c.bootSlot.bytes.subarray(VCPU_AREAS_GPA, 0x88000).every((b) => b === 0)).toBe(true)
    expect(c.bootSlot.bytes.subarray(0x8c000).every((b) => b === 0)).toBe(true)
  })

  test('writes: the shared part (one instance for every program) and the vCPU\'s area, as in bootSlot.bytes', () => {
    const c = compileGuestProgram(program, { vcpuId: 2 })
    expect(c.writes.map((w) => [w.gpa, w.bytes.length])).toEqual([[0n, 0x80000], [0x88000n, 0x4000]])
    expect(same(c.writes[0].bytes, c.bootSlot.bytes.subarray(0, 0x80000))).toBe(true)
    expect(same(c.writes[1].bytes, c.bootSlot.bytes.subarray(0x88000, 0x8c000))).toBe(true)
    expect(compileGuestProgram(program, { vcpuId: 0 }).writes[0].bytes).toBe(c.writes[0].bytes)
  })

  test('regs and sregs are the vCPU\'s initial state', () => {
    const c = compileGuestProgram(program, { vcpuId: 2 })
    expect(c.regs).toEqual(initialRegsBytes(2))
    expect(c.sregs).toEqual(initialSregsBytes(2))
    expect(c.regs).toHaveLength(144)
    expect(c.sregs).toHaveLength(312)
  })

  test('two vCPUs of one VM: applying both compilations\' writes keeps both programs', () => {
    const slot = new Uint8Array(BOOT_SLOT_SIZE)
    const a = compileGuestProgram({ steps: [{ op: 'signal', port: 1, value: 1 }] }, { vcpuId: 0 })
    const b = compileGuestProgram({ steps: [{ op: 'signal', port: 2, value: 2 }] }, { vcpuId: 1 })
    for (const w of [...a.writes, ...b.writes]) slot.set(w.bytes, Number(w.gpa))
    expect(slot.subarray(Number(a.codeGpa), Number(a.labels.end))).toEqual(a.code)
    expect(slot.subarray(Number(b.codeGpa), Number(b.labels.end))).toEqual(b.code)
  })

  test('stepAt maps a RIP back to its step', () => {
    const c = compileGuestProgram({ steps: [{ op: 'signal', port: 0x10, value: 1 }, { op: 'hlt' }] })
    expect([0x80000n, 0x8000an, 0x8000bn, 0x8000cn, 0x80011n, 0x80012n, 0x7ffffn].map((rip) => stepAt(c.labels, rip)))
      .toEqual([0, 0, 1, 'halt', 'halt', undefined, undefined])
  })
})

describe('compileGuestProgram: invalid programs are refused with a RangeError naming the step', () => {
  const END = IDENTITY_MAP_END
  const cases: [string, GuestStep[], RegExp][] = [
    ['gva past the identity map', [{ op: 'hlt' }, { op: 'write', gva: END, value: 0 }], /^step 1 \(write\): gva 0x1000000000\.\.0x1000000008 is outside the identity map/],
    ['an access straddling the end of the map', [{ op: 'read', gva: END - 4n }], /^step 0 \(read\): .*outside the identity map/],
    ['spin on the last 4 bytes', [{ op: 'spin_while_eq', gva: END - 4n, value: 0 }], /^step 0 \(spin_while_eq\): .*outside/],
    ['touch_pages whose last page is past the map', [{ op: 'touch_pages', gva: END - 0x2000n, pages: 3, stride: 4096, write: true, value: 0 }], /^step 0 \(touch_pages\): the last page touched .* is outside/],
    ['fill past the map', [{ op: 'fill', gva: END - 1n, length: 2, byte: 0 }], /^step 0 \(fill\): range .* is outside/],
    ['check past the map', [{ op: 'check', gva: END, length: 1, byte: 0 }], /^step 0 \(check\): range .* is outside/],
    ['lidt table past the map', [{ op: 'lidt', base: END - 0x100n, limit: 0xfff }], /^step 0 \(lidt\): table .* is outside/],
    ['a jump to a step that does not exist', [{ op: 'hlt' }, { op: 'jump', to: 2 }], /^step 1 \(jump\): to 2: there is no step 2/],
    ['a negative jump', [{ op: 'jump', to: -1 }], /^step 0 \(jump\): to must be an integer/],
    ['width 3', [{ op: 'write', gva: 0, value: 0, width: 3 as 4 }], /^step 0 \(write\): width must be 1, 2, 4 or 8, got 3/],
    ['width 16 on a read', [{ op: 'hlt' }, { op: 'hlt' }, { op: 'read', gva: 0, width: 16 as 8 }], /^step 2 \(read\): width must be 1, 2, 4 or 8, got 16/],
    ['a value wider than the store', [{ op: 'write', gva: 0, value: 0x100, width: 1 }], /^step 0 \(write\): value 256 is out of range 0\.\.0xff/],
    ['a signal value wider than 32 bits', [{ op: 'signal', port: 1, value: 0x1_0000_0000n }], /^step 0 \(signal\): value .* out of range 0\.\.0xffffffff/],
    ['a port past 0xffff', [{ op: 'signal', port: 0x10000 }], /^step 0 \(signal\): port must be an integer in 0\.\.65535/],
    ['a byte past 0xff', [{ op: 'fill', gva: 0, length: 1, byte: 256 }], /^step 0 \(fill\): byte must be/],
    ['an unsafe number', [{ op: 'write', gva: 2 ** 60, value: 0, expectFault: true }], /^step 0 \(write\): gva .* pass a bigint/],
    ['a negative gva', [{ op: 'read', gva: -8 }], /^step 0 \(read\): gva -8 is out of range/],
    ['a fractional length', [{ op: 'check', gva: 0, length: 1.5, byte: 0 }], /^step 0 \(check\): length must be an integer/],
    ['an unknown op', [{ op: 'nop' } as unknown as GuestStep], /^step 0 \(nop\): unknown op/],
    ['a step that is not an object', [null as unknown as GuestStep], /^step 0 \(object\): a step must be an object/],
  ]

  test.each(cases)('%s', (_name, steps, message) => {
    expect(() => compileGuestProgram({ steps })).toThrow(RangeError)
    expect(() => compileGuestProgram({ steps })).toThrow(message)
  })

  test('expectFault lets a write or read name any u64 gva, non-canonical included', () => {
    const c = compileGuestProgram({ steps: [{ op: 'write', gva: 1n << 63n, value: 0, expectFault: true }] })
    expect(decode(c.code)[0]?.text).toBe('movabs rsi,0x8000000000000000')
    expect(() => compileGuestProgram({ steps: [{ op: 'read', gva: END, expectFault: true }] })).not.toThrow()
  })

  test('too many lidt steps, too much code, a vCPU id without an area', () => {
    const lidts: GuestStep[] = Array.from({ length: LIDT_DESCRIPTORS_MAX + 1 }, () => ({ op: 'lidt', base: 0, limit: 0 }))
    expect(() => compileGuestProgram({ steps: lidts })).toThrow(/^step 128 \(lidt\): more than 128 lidt steps/)
    const many: GuestStep[] = Array.from({ length: 2000 }, () => ({ op: 'write', gva: 0x1_0000_0000n, value: 1n << 40n }))
    expect(() => compileGuestProgram({ steps: many })).toThrow(/^guest program: \d+ bytes of code do not fit/)
    expect(() => compileGuestProgram({ steps: [] }, { vcpuId: 96 })).toThrow(RangeError)
  })
})

// --- the property ---------------------------------------------------------------------------------

const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })
const width = fc.constantFrom<1 | 2 | 4 | 8>(1, 2, 4, 8)
const gvaFor = (length: bigint): fc.Arbitrary<bigint> =>
  fc.oneof(fc.bigInt({ min: 0n, max: 0x1_0000n }), fc.bigInt({ min: 0n, max: IDENTITY_MAP_END - length }))

/** A valid step; a jump carries a seed that becomes `to` once the program's length is known. */
const stepArbitrary: fc.Arbitrary<GuestStep | { op: 'jump'; seed: number }> = fc.oneof(
  fc.record({ w: width, gva: fc.bigInt({ min: 0n, max: IDENTITY_MAP_END - 8n }), acc: fc.boolean(), v: u64 })
    .map(({ w, gva, acc, v }): GuestStep => acc
      ? { op: 'write', gva, width: w }
      : { op: 'write', gva, width: w, value: BigInt.asUintN(8 * w, v) }),
  fc.record({ w: width, gva: gvaFor(8n) }).map(({ w, gva }): GuestStep => ({ op: 'read', gva, width: w })),
  fc.record({ gva: gvaFor(8n), value: u64 }).map((s): GuestStep => ({ op: 'spin_while_eq', ...s })),
  fc.record({ port: fc.integer({ min: 0, max: 0xffff }), value: fc.option(fc.bigInt({ min: 0n, max: 0xffff_ffffn }), { nil: undefined }) })
    .map(({ port, value }): GuestStep => value === undefined ? { op: 'signal', port } : { op: 'signal', port, value }),
  fc.record({ pages: fc.integer({ min: 0, max: 64 }), stride: fc.constantFrom(8, 4096, 0x20_0000), write: fc.boolean(), value: u64 })
    .chain((s) => gvaFor(BigInt(Math.max(0, s.pages - 1) * s.stride + 8)).map((gva): GuestStep => ({ op: 'touch_pages', gva, ...s }))),
  fc.record({ length: fc.integer({ min: 0, max: 0x1_0000 }), byte: fc.integer({ min: 0, max: 255 }), check: fc.boolean() })
    .chain(({ length, byte, check }) => gvaFor(BigInt(length)).map((gva): GuestStep => ({ op: check ? 'check' : 'fill', gva, length, byte }))),
  fc.integer({ min: 0, max: 0xffff }).chain((limit) => gvaFor(BigInt(limit) + 1n).map((base): GuestStep => ({ op: 'lidt', base, limit }))),
  fc.nat().map((seed) => ({ op: 'jump' as const, seed })),
  fc.constant<GuestStep>({ op: 'hlt' }),
)

const programArbitrary: fc.Arbitrary<GuestProgram> = fc.array(stepArbitrary, { maxLength: 16 }).map((steps) => ({
  steps: steps.map((s): GuestStep => 'seed' in s ? { op: 'jump', to: s.seed % steps.length } : s),
}))

/** What must hold of any compiled program, checked on the decoded code, not on the assembler's bookkeeping. */
function checkStructure(program: GuestProgram, c: CompiledGuest): void {
  const insns = decode(c.code, c.codeGpa)
  const starts = new Set(insns.map((i) => c.codeGpa + BigInt(i.offset)))
  expect(insns.reduce((n, i) => n + i.length, 0)).toBe(c.code.length)
  expect(c.labels.end).toBe(c.codeGpa + BigInt(c.code.length))

  // Only instructions measured to work on PVM hosts.
  const allowed = new Set(['mov', 'movabs', 'add', 'sub', 'cmp', 'je', 'jne', 'jmp', 'rep stos', 'out', 'lidt', 'hlt'])
  for (const i of insns) expect(allowed.has(i.mnemonic), i.text).toBe(true)

  // Step starts are instruction boundaries (or the end of the code for trailing empty steps: never, the
  // halt loop follows), in order.
  for (const s of [...c.labels.steps, c.labels.halt]) expect(starts.has(s)).toBe(true)
  for (let i = 1; i < c.labels.steps.length; i++) expect(c.labels.steps[i]! >= c.labels.steps[i - 1]!).toBe(true)

  // Every branch lands on a boundary: a `jump` step is one jmp to its target step's start, any other
  // branch stays inside its own step.
  for (const i of insns) {
    if (i.target === undefined) continue
    expect(starts.has(i.target)).toBe(true)
    const rip = c.codeGpa + BigInt(i.offset)
    const step = stepAt(c.labels, rip)
    if (step === 'halt') {
      expect(i.target).toBe(c.labels.halt)
      continue
    }
    expect(step).toBeTypeOf('number')
    const s = program.steps[step as number]!
    if (s.op === 'jump') {
      expect(i.mnemonic).toBe('jmp')
      expect(rip).toBe(c.labels.steps[step as number])
      expect(i.target).toBe(c.labels.steps[s.to])
    } else {
      expect(stepAt(c.labels, i.target)).toBe(step)
    }
  }

  // The code ends with `hlt; jmp <that hlt>`.
  const [hlt, jmp] = insns.slice(-2)
  expect(hlt?.text).toBe('hlt')
  expect(c.codeGpa + BigInt(hlt!.offset)).toBe(c.labels.halt)
  expect(jmp?.target).toBe(c.labels.halt)
}

describe('compileGuestProgram: properties', () => {
  test('property: compiling is deterministic and every branch lands on an instruction boundary', () => {
    fc.assert(fc.property(programArbitrary, fc.integer({ min: 0, max: 95 }), (program, vcpuId) => {
      const c = compileGuestProgram(program, { vcpuId })
      expectSameCompilation(compileGuestProgram(structuredClone(program), { vcpuId }), c)
      checkStructure(program, c)
    }), { numRuns: 200 })
  })
})
