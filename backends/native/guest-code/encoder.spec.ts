// Every instruction form of encoder.ts pinned against GNU as 2.40 (`as --64`, Intel syntax) and the text
// GNU objdump 2.40 (`objdump -d -M intel`) printed for those bytes. The literals were produced once on a
// development machine; this spec never runs `as`. Each row also checks decode.ts against objdump.

import { describe, expect, test } from 'vitest'
import { Assembler } from './assembler.ts'
import { decode } from './decode.ts'
import {
  HLT, OUT_DX_EAX, REP_STOSB, addImm8, addRegReg, cmpMem8Imm8, cmpRegReg, jccRel32, jmpRel32, lidt, load, movImm,
  movImm32, movImm64, movRegReg, store, subImm8, type Bytes,
} from './encoder.ts'

function hex(bytes: Bytes | Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ')
}

// [GNU as source line, what encoder.ts makes of it, the bytes as produced, objdump's text]
const FORMS: [string, Bytes, string, string][] = [
  ['mov rax, 0x1122334455667788', movImm64('rax', 0x1122334455667788n), '48 b8 88 77 66 55 44 33 22 11', 'movabs rax,0x1122334455667788'],
  ['mov rsi, 0x1122334455667788', movImm64('rsi', 0x1122334455667788n), '48 be 88 77 66 55 44 33 22 11', 'movabs rsi,0x1122334455667788'],
  ['mov r8, 0x1122334455667788', movImm64('r8', 0x1122334455667788n), '49 b8 88 77 66 55 44 33 22 11', 'movabs r8,0x1122334455667788'],
  ['mov r15, 0x1122334455667788', movImm64('r15', 0x1122334455667788n), '49 bf 88 77 66 55 44 33 22 11', 'movabs r15,0x1122334455667788'],
  ['mov eax, 0x11223344', movImm32('rax', 0x11223344n), 'b8 44 33 22 11', 'mov    eax,0x11223344'],
  ['mov edx, 0x11223344', movImm32('rdx', 0x11223344n), 'ba 44 33 22 11', 'mov    edx,0x11223344'],
  ['mov ebx, 0', movImm32('rbx', 0n), 'bb 00 00 00 00', 'mov    ebx,0x0'],
  ['mov r9d, 0x11223344', movImm32('r9', 0x11223344n), '41 b9 44 33 22 11', 'mov    r9d,0x11223344'],
  ['mov eax, ebx', movRegReg(4, 'rax', 'rbx'), '89 d8', 'mov    eax,ebx'],
  ['mov rax, rbx', movRegReg(8, 'rax', 'rbx'), '48 89 d8', 'mov    rax,rbx'],
  ['mov r8, r15', movRegReg(8, 'r8', 'r15'), '4d 89 f8', 'mov    r8,r15'],
  ['mov byte ptr [rsi], al', store(1, 'rsi', 'rax'), '88 06', 'mov    BYTE PTR [rsi],al'],
  ['mov byte ptr [rsi], bl', store(1, 'rsi', 'rbx'), '88 1e', 'mov    BYTE PTR [rsi],bl'],
  ['mov byte ptr [rsi], sil', store(1, 'rsi', 'rsi'), '40 88 36', 'mov    BYTE PTR [rsi],sil'],
  ['mov byte ptr [rdi], r8b', store(1, 'rdi', 'r8'), '44 88 07', 'mov    BYTE PTR [rdi],r8b'],
  ['mov word ptr [rsi], ax', store(2, 'rsi', 'rax'), '66 89 06', 'mov    WORD PTR [rsi],ax'],
  ['mov word ptr [rsi], bx', store(2, 'rsi', 'rbx'), '66 89 1e', 'mov    WORD PTR [rsi],bx'],
  ['mov dword ptr [rsi], eax', store(4, 'rsi', 'rax'), '89 06', 'mov    DWORD PTR [rsi],eax'],
  ['mov dword ptr [rsi], ebx', store(4, 'rsi', 'rbx'), '89 1e', 'mov    DWORD PTR [rsi],ebx'],
  ['mov qword ptr [rsi], rax', store(8, 'rsi', 'rax'), '48 89 06', 'mov    QWORD PTR [rsi],rax'],
  ['mov qword ptr [rsi], rbx', store(8, 'rsi', 'rbx'), '48 89 1e', 'mov    QWORD PTR [rsi],rbx'],
  ['mov qword ptr [rsp], rax', store(8, 'rsp', 'rax'), '48 89 04 24', 'mov    QWORD PTR [rsp],rax'],
  ['mov qword ptr [rbp], rax', store(8, 'rbp', 'rax'), '48 89 45 00', 'mov    QWORD PTR [rbp+0x0],rax'],
  ['mov qword ptr [r12], rax', store(8, 'r12', 'rax'), '49 89 04 24', 'mov    QWORD PTR [r12],rax'],
  ['mov qword ptr [r13], rax', store(8, 'r13', 'rax'), '49 89 45 00', 'mov    QWORD PTR [r13+0x0],rax'],
  ['mov qword ptr [r9], r10', store(8, 'r9', 'r10'), '4d 89 11', 'mov    QWORD PTR [r9],r10'],
  ['mov bl, byte ptr [rsi]', load(1, 'rbx', 'rsi'), '8a 1e', 'mov    bl,BYTE PTR [rsi]'],
  ['mov bx, word ptr [rsi]', load(2, 'rbx', 'rsi'), '66 8b 1e', 'mov    bx,WORD PTR [rsi]'],
  ['mov ebx, dword ptr [rsi]', load(4, 'rbx', 'rsi'), '8b 1e', 'mov    ebx,DWORD PTR [rsi]'],
  ['mov rbx, qword ptr [rsi]', load(8, 'rbx', 'rsi'), '48 8b 1e', 'mov    rbx,QWORD PTR [rsi]'],
  ['mov rbx, qword ptr [rsp]', load(8, 'rbx', 'rsp'), '48 8b 1c 24', 'mov    rbx,QWORD PTR [rsp]'],
  ['mov r11, qword ptr [r13]', load(8, 'r11', 'r13'), '4d 8b 5d 00', 'mov    r11,QWORD PTR [r13+0x0]'],
  ['cmp rbx, rax', cmpRegReg('rbx', 'rax'), '48 39 c3', 'cmp    rbx,rax'],
  ['cmp r8, r9', cmpRegReg('r8', 'r9'), '4d 39 c8', 'cmp    r8,r9'],
  ['cmp byte ptr [rsi], 0xab', cmpMem8Imm8('rsi', 0xab), '80 3e ab', 'cmp    BYTE PTR [rsi],0xab'],
  ['cmp byte ptr [r12], 0x7f', cmpMem8Imm8('r12', 0x7f), '41 80 3c 24 7f', 'cmp    BYTE PTR [r12],0x7f'],
  ['add rbx, 1', addImm8('rbx', 1), '48 83 c3 01', 'add    rbx,0x1'],
  ['add rsi, 1', addImm8('rsi', 1), '48 83 c6 01', 'add    rsi,0x1'],
  ['add rsi, rdx', addRegReg('rsi', 'rdx'), '48 01 d6', 'add    rsi,rdx'],
  ['add r8, r9', addRegReg('r8', 'r9'), '4d 01 c8', 'add    r8,r9'],
  ['sub rcx, 1', subImm8('rcx', 1), '48 83 e9 01', 'sub    rcx,0x1'],
  ['sub r10, 1', subImm8('r10', 1), '49 83 ea 01', 'sub    r10,0x1'],
  ['rep stosb', REP_STOSB, 'f3 aa', 'rep stos BYTE PTR es:[rdi],al'],
  ['out dx, eax', OUT_DX_EAX, 'ef', 'out    dx,eax'],
  ['lidt [rsi]', lidt('rsi'), '0f 01 1e', 'lidt   [rsi]'],
  ['lidt [r12]', lidt('r12'), '41 0f 01 1c 24', 'lidt   [r12]'],
  ['lidt [rbp]', lidt('rbp'), '0f 01 5d 00', 'lidt   [rbp+0x0]'],
  ['hlt', HLT, 'f4', 'hlt'],
]

describe('encoder: the bytes GNU as produces', () => {
  test.each(FORMS)('%s', (_source, bytes, expected) => {
    expect(hex(bytes)).toBe(expected)
  })

  // `{disp32} jmp l1` etc. at offset 0 with l1 at 0x17, then backwards to l0 at 0, as GNU as encodes them.
  test('jmp/jcc rel32, forwards and backwards', () => {
    expect(hex(jmpRel32(0x12))).toBe('e9 12 00 00 00')
    expect(hex(jccRel32('e', 0x0c))).toBe('0f 84 0c 00 00 00')
    expect(hex(jccRel32('ne', 0x06))).toBe('0f 85 06 00 00 00')
    expect(hex(jccRel32('b', 0))).toBe('0f 82 00 00 00 00')
    expect(hex(jmpRel32(-0x1c))).toBe('e9 e4 ff ff ff')
    expect(hex(jccRel32('e', -0x22))).toBe('0f 84 de ff ff ff')
    expect(hex(jccRel32('ne', -0x28))).toBe('0f 85 d8 ff ff ff')
  })

  test('movImm picks mov r32, imm32 below 2^32 and movabs above', () => {
    expect(hex(movImm('rsi', 0xffff_ffffn))).toBe('be ff ff ff ff')
    expect(hex(movImm('rsi', 0x1_0000_0000n))).toBe('48 be 00 00 00 00 01 00 00 00')
  })

  test('out-of-range immediates and displacements are refused, never truncated', () => {
    expect(() => movImm64('rax', 1n << 64n)).toThrow(RangeError)
    expect(() => movImm64('rax', -1n)).toThrow(RangeError)
    expect(() => movImm32('rax', 1n << 32n)).toThrow(RangeError)
    expect(() => addImm8('rax', 128)).toThrow(RangeError)
    expect(() => subImm8('rax', -129)).toThrow(RangeError)
    expect(() => cmpMem8Imm8('rsi', 256)).toThrow(RangeError)
    expect(() => jmpRel32(2 ** 31)).toThrow(RangeError)
    expect(() => jccRel32('e', -(2 ** 31) - 1)).toThrow(RangeError)
  })
})

describe('decode: the text GNU objdump prints for the same bytes', () => {
  test.each(FORMS)('%s', (_source, bytes, _expected, text) => {
    const insns = decode(Uint8Array.from(bytes))
    expect(insns).toHaveLength(1)
    expect(insns[0]?.text).toBe(text)
    expect(insns[0]?.length).toBe(bytes.length)
  })
})

describe('Assembler', () => {
  // The same program as the rel32 test above: l0: jmp l1; je l1; jne l1; jb l1; l1: jmp l0; je l0; jne l0.
  test('resolves forward and backward labels to the bytes GNU as produced', () => {
    const a = new Assembler()
    const l0 = a.label('l0')
    const l1 = a.label('l1')
    a.bind(l0)
    a.jmp(l1)
    a.jcc('e', l1)
    a.jcc('ne', l1)
    a.jcc('b', l1)
    a.bind(l1)
    a.jmp(l0)
    a.jcc('e', l0)
    a.jcc('ne', l0)
    const out = a.finish()
    expect(hex(out.code)).toBe([
      'e9 12 00 00 00', '0f 84 0c 00 00 00', '0f 85 06 00 00 00', '0f 82 00 00 00 00',
      'e9 e4 ff ff ff', '0f 84 de ff ff ff', '0f 85 d8 ff ff ff',
    ].join(' '))
    expect(out.instructionStarts).toEqual([0x00, 0x05, 0x0b, 0x11, 0x17, 0x1c, 0x22])
    expect(out.labels.get(l1)).toBe(0x17)
  })

  test('an unbound label and a label bound twice are errors', () => {
    const a = new Assembler()
    a.jmp(a.label('nowhere'))
    expect(() => a.finish()).toThrow(/nowhere/)
    const b = new Assembler()
    const l = b.label('twice')
    b.bind(l)
    expect(() => b.bind(l)).toThrow(/twice/)
  })
})
