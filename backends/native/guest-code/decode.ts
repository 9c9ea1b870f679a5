// A decoder for exactly the instructions encoder.ts emits, printing them as GNU objdump does
// (`objdump -d -M intel`). It exists so that a reader, a self-test or a failing test's report can see the
// guest code as instructions: where each starts, where each branch goes, and its text. Any byte outside
// that subset is an error, which doubles as a check that the compiler emitted nothing else.

import { hex } from '../../../harness/hex.ts'

const NAMES: Record<1 | 2 | 4 | 8, readonly string[]> = {
  8: ['rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'],
  4: ['eax', 'ecx', 'edx', 'ebx', 'esp', 'ebp', 'esi', 'edi', 'r8d', 'r9d', 'r10d', 'r11d', 'r12d', 'r13d', 'r14d', 'r15d'],
  2: ['ax', 'cx', 'dx', 'bx', 'sp', 'bp', 'si', 'di', 'r8w', 'r9w', 'r10w', 'r11w', 'r12w', 'r13w', 'r14w', 'r15w'],
  1: ['al', 'cl', 'dl', 'bl', 'spl', 'bpl', 'sil', 'dil', 'r8b', 'r9b', 'r10b', 'r11b', 'r12b', 'r13b', 'r14b', 'r15b'],
}
const LEGACY_HIGH_BYTE = ['ah', 'ch', 'dh', 'bh']
const PTR: Record<1 | 2 | 4 | 8, string> = { 1: 'BYTE PTR ', 2: 'WORD PTR ', 4: 'DWORD PTR ', 8: 'QWORD PTR ' }
const JCC = ['jo', 'jno', 'jb', 'jae', 'je', 'jne', 'jbe', 'ja', 'js', 'jns', 'jp', 'jnp', 'jl', 'jge', 'jle', 'jg']

export interface DecodedInstruction {
  /** Offset of the first byte from the start of the code. */
  offset: number
  length: number
  /** The mnemonic as objdump prints it (`movabs`, `mov`, `rep stos`, `je`, ...). */
  mnemonic: string
  /** The whole instruction as objdump -M intel prints it, e.g. `mov    QWORD PTR [rsi],rax`. */
  text: string
  /** Where a jmp or jcc goes (absolute, in the same address space as `base`). */
  target?: bigint
}

function format(mnemonic: string, operands: string): string {
  return operands === '' ? mnemonic : `${mnemonic.padEnd(6)} ${operands}`
}

class Reader {
  constructor(readonly code: Uint8Array, public at: number, readonly start: number) {}

  byte(): number {
    const b = this.code[this.at]
    if (b === undefined) throw new Error(`decode: instruction at offset ${this.start} runs past the end of the code`)
    this.at++
    return b
  }

  le(bytes: number): bigint {
    let v = 0n
    for (let i = 0; i < bytes; i++) v |= BigInt(this.byte()) << BigInt(8 * i)
    return v
  }

  unknown(what: string): never {
    throw new Error(`decode: ${what} at offset ${this.start} is not an instruction the guest-code encoder emits`)
  }
}

function register(width: 1 | 2 | 4 | 8, n: number, hasRex: boolean): string {
  if (width === 1 && !hasRex && n >= 4 && n <= 7) return LEGACY_HIGH_BYTE[n - 4] as string
  return NAMES[width][n] as string
}

/** Decodes every instruction of `code`, which starts at address `base`. Throws on anything outside the encoder's subset. */
export function decode(code: Uint8Array, base = 0n): DecodedInstruction[] {
  const out: DecodedInstruction[] = []
  let at = 0
  while (at < code.length) {
    const insn = decodeOne(code, at, base)
    out.push(insn)
    at += insn.length
  }
  return out
}

function decodeOne(code: Uint8Array, start: number, base: bigint): DecodedInstruction {
  const r = new Reader(code, start, start)
  let opsize16 = false
  let rep = false
  let b = r.byte()
  for (; ; b = r.byte()) {
    if (b === 0x66) opsize16 = true
    else if (b === 0xf3) rep = true
    else break
  }
  const hasRex = b >= 0x40 && b <= 0x4f
  const rex = hasRex ? b : 0
  if (hasRex) b = r.byte()
  const W = (rex & 8) !== 0
  const R = (rex & 4) !== 0 ? 8 : 0
  const B = (rex & 1) !== 0 ? 8 : 0
  if ((rex & 2) !== 0) r.unknown('REX.X')

  /** ModR/M: the reg field, and the r/m operand as a register number or a memory operand's text. */
  const modrm = (): { reg: number; rmReg: number | null; mem: string } => {
    const m = r.byte()
    const mod = m >> 6
    const reg = ((m >> 3) & 7) | R
    const rm = m & 7
    if (mod === 3) return { reg, rmReg: rm | B, mem: '' }
    let baseReg = rm | B
    if (rm === 4) {
      const sib = r.byte()
      if (sib !== 0x24) r.unknown(`SIB ${hex(sib)}`)
      baseReg = 4 | B
    }
    if (mod === 0 && rm === 5) r.unknown('a RIP-relative operand')
    let disp = ''
    if (mod === 1) {
      const d = r.byte()
      disp = d < 0x80 ? `+${hex(d)}` : `-${hex(0x100 - d)}`
    } else if (mod === 2) {
      r.unknown('a disp32 operand')
    }
    return { reg, rmReg: null, mem: `[${NAMES[8][baseReg]}${disp}]` }
  }

  const done = (mnemonic: string, operands: string, target?: bigint): DecodedInstruction => {
    const length = r.at - start
    const insn: DecodedInstruction = { offset: start, length, mnemonic, text: format(mnemonic, operands) }
    if (target !== undefined) insn.target = target
    return insn
  }
  const end = (): bigint => base + BigInt(r.at)
  const rel32 = (): bigint => BigInt.asIntN(32, r.le(4))

  if (rep) {
    if (b === 0xaa && !hasRex && !opsize16) return done('rep stos', 'BYTE PTR es:[rdi],al')
    r.unknown(`rep ${hex(b)}`)
  }
  if (b >= 0xb8 && b <= 0xbf) {
    const reg = (b & 7) | B
    if (W) return done('movabs', `${NAMES[8][reg]},${hex(r.le(8))}`)
    return done('mov', `${NAMES[opsize16 ? 2 : 4][reg]},${hex(r.le(opsize16 ? 2 : 4))}`)
  }
  const width: 1 | 2 | 4 | 8 = opsize16 ? 2 : W ? 8 : 4
  switch (b) {
    case 0x88: case 0x89: case 0x8a: case 0x8b: {
      const w = b === 0x88 || b === 0x8a ? 1 : width
      const { reg, rmReg, mem } = modrm()
      const regName = register(w, reg, hasRex)
      if (rmReg !== null) {
        const rmName = register(w, rmReg, hasRex)
        return done('mov', b <= 0x89 ? `${rmName},${regName}` : `${regName},${rmName}`)
      }
      return done('mov', b <= 0x89 ? `${PTR[w]}${mem},${regName}` : `${regName},${PTR[w]}${mem}`)
    }
    case 0x01: case 0x39: {
      const { reg, rmReg, mem } = modrm()
      const rm = rmReg === null ? `${PTR[width]}${mem}` : register(width, rmReg, hasRex)
      return done(b === 0x01 ? 'add' : 'cmp', `${rm},${register(width, reg, hasRex)}`)
    }
    case 0x83: {
      const { reg, rmReg, mem } = modrm()
      const op = reg & 7
      if (op !== 0 && op !== 5) r.unknown(`83 /${op}`)
      const imm = BigInt.asUintN(width * 8, BigInt.asIntN(8, BigInt(r.byte())))
      const rm = rmReg === null ? `${PTR[width]}${mem}` : register(width, rmReg, hasRex)
      return done(op === 0 ? 'add' : 'sub', `${rm},${hex(imm)}`)
    }
    case 0x80: {
      const { reg, rmReg, mem } = modrm()
      if ((reg & 7) !== 7) r.unknown(`80 /${reg & 7}`)
      const rm = rmReg === null ? `${PTR[1]}${mem}` : register(1, rmReg, hasRex)
      return done('cmp', `${rm},${hex(r.byte())}`)
    }
    case 0xe9: {
      const rel = rel32()
      return done('jmp', hex(end() + rel), end() + rel)
    }
    case 0x0f: {
      const b2 = r.byte()
      if (b2 >= 0x80 && b2 <= 0x8f) {
        const rel = rel32()
        return done(JCC[b2 & 0xf] as string, hex(end() + rel), end() + rel)
      }
      if (b2 === 0x01) {
        const { reg, rmReg, mem } = modrm()
        if ((reg & 7) !== 3 || rmReg !== null) r.unknown('0f 01 other than lidt [m]')
        return done('lidt', mem)
      }
      return r.unknown(`0f ${hex(b2)}`)
    }
    case 0xef: return done('out', 'dx,eax')
    case 0xf4: return done('hlt', '')
    default: return r.unknown(`opcode ${hex(b)}`)
  }
}

/** The code as objdump -d prints it, one `address:<TAB>text` line per instruction (without the bytes column). */
export function disassemble(code: Uint8Array, base = 0n): string {
  return decode(code, base).map((i) => `${(base + BigInt(i.offset)).toString(16).padStart(8)}:\t${i.text}`).join('\n')
}
