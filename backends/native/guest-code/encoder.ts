// A tiny x86-64 encoder: exactly the instructions the guest-program compiler emits, and no others.
//
// Every instruction here is one that KVM's instruction emulator runs on the project's PVM hosts
// (shared/reference/host-kvm.md, "What works"): mov, add, sub, cmp, jcc/jmp, rep stosb, out, hlt, plus
// lidt for the `lidt` step. Nothing else can be encoded, so the compiler cannot emit an instruction that
// ends in KVM_EXIT_INTERNAL_ERROR or a triple fault on those hosts (popcnt, SSE, vmcall, ud2, ...).
//
// Encodings follow the Intel SDM vol. 2 (ch. 2.1 instruction format, 2.2.1 REX prefixes, and the opcode
// pages of each instruction). encoder.spec.ts pins each form against bytes GNU as 2.40 produced.
// Operands are named by their 64-bit register; a 1/2/4-byte operand uses that register's low part
// (rsi with width 1 is sil, which needs a REX prefix).

/** The sixteen general-purpose registers, in encoding order (SDM vol. 2, table 2-2 and 3-1). */
export const REGISTERS = [
  'rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi',
  'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15',
] as const

export type Reg = (typeof REGISTERS)[number]

/** Operand size in bytes. */
export type Width = 1 | 2 | 4 | 8

/** Condition codes of Jcc (the low nibble of 0F 80+cc), SDM vol. 2, "Jcc". */
export const CONDITIONS = {
  o: 0x0, no: 0x1, b: 0x2, ae: 0x3, e: 0x4, ne: 0x5, be: 0x6, a: 0x7,
  s: 0x8, ns: 0x9, p: 0xa, np: 0xb, l: 0xc, ge: 0xd, le: 0xe, g: 0xf,
} as const

export type Condition = keyof typeof CONDITIONS

/** One instruction's bytes. */
export type Bytes = readonly number[]

const U32_MAX = 0xffff_ffffn
const U64_MAX = (1n << 64n) - 1n

function code(r: Reg): number {
  return REGISTERS.indexOf(r)
}

/**
 * The REX prefix, or nothing when it would be 0x40 and no byte register needs it. `byteReg` is a
 * register used as an 8-bit operand: spl, bpl, sil and dil exist only with a REX prefix (without one,
 * codes 4..7 mean ah, ch, dh, bh).
 */
function rex(w: boolean, reg: number, base: number, byteReg?: number): Bytes {
  const value = 0x40 | (w ? 8 : 0) | ((reg >> 3) << 2) | (base >> 3)
  const needsEmpty = byteReg !== undefined && byteReg >= 4 && byteReg <= 7
  return value !== 0x40 || needsEmpty ? [value] : []
}

function modrm(mod: number, reg: number, rm: number): number {
  return (mod << 6) | ((reg & 7) << 3) | (rm & 7)
}

/**
 * ModR/M (and SIB, and displacement) for the memory operand `[base]` with `reg` in the reg field.
 * rsp and r12 in r/m mean "a SIB byte follows", so they take SIB 0x24 (base only, no index); rbp and r13
 * with mod 00 mean RIP-relative, so they take mod 01 and a zero disp8 (SDM vol. 2, tables 2-2 and 2-3).
 */
function memory(reg: number, base: number): Bytes {
  switch (base & 7) {
    case 4: return [modrm(0, reg, 4), 0x24]
    case 5: return [modrm(1, reg, 5), 0x00]
    default: return [modrm(0, reg, base)]
  }
}

function le(value: bigint, bytes: number): number[] {
  const out: number[] = []
  for (let i = 0; i < bytes; i++) out.push(Number((value >> BigInt(8 * i)) & 0xffn))
  return out
}

function checkImm(value: bigint, max: bigint, what: string): void {
  if (value < 0n || value > max) throw new RangeError(`${what}: immediate 0x${value.toString(16)} does not fit`)
}

function checkImm8(value: number, what: string): void {
  if (!Number.isInteger(value) || value < -128 || value > 127) throw new RangeError(`${what}: ${value} is not a signed byte`)
}

function checkRel32(rel: number, what: string): void {
  if (!Number.isInteger(rel) || rel < -(2 ** 31) || rel >= 2 ** 31) throw new RangeError(`${what}: displacement ${rel} does not fit in rel32`)
}

/** `mov r64, imm64` (REX.W B8+r io; GNU as spells it `movabs`). */
export function movImm64(dst: Reg, imm: bigint): Bytes {
  checkImm(imm, U64_MAX, 'mov r64, imm64')
  const d = code(dst)
  return [...rex(true, 0, d), 0xb8 + (d & 7), ...le(imm, 8)]
}

/** `mov r32, imm32` (B8+r id): writing a 32-bit register zeroes bits 63:32 (SDM vol. 1, 3.4.1.1). */
export function movImm32(dst: Reg, imm: bigint): Bytes {
  checkImm(imm, U32_MAX, 'mov r32, imm32')
  const d = code(dst)
  return [...rex(false, 0, d), 0xb8 + (d & 7), ...le(imm, 4)]
}

/** The shorter of the two: `mov r32, imm32` when the value fits in 32 bits, else `mov r64, imm64`. */
export function movImm(dst: Reg, imm: bigint): Bytes {
  return imm <= U32_MAX && imm >= 0n ? movImm32(dst, imm) : movImm64(dst, imm)
}

/** `mov dst, src` between registers, 4 or 8 bytes (89 /r, r/m = dst). A 4-byte move zeroes bits 63:32. */
export function movRegReg(width: 4 | 8, dst: Reg, src: Reg): Bytes {
  const d = code(dst)
  const s = code(src)
  return [...rex(width === 8, s, d), 0x89, modrm(3, s, d)]
}

/** `mov [base], src` of `width` bytes (88 /r; 66 89 /r; 89 /r; REX.W 89 /r). */
export function store(width: Width, base: Reg, src: Reg): Bytes {
  const b = code(base)
  const s = code(src)
  const prefix = width === 2 ? [0x66] : []
  const opcode = width === 1 ? 0x88 : 0x89
  return [...prefix, ...rex(width === 8, s, b, width === 1 ? s : undefined), opcode, ...memory(s, b)]
}

/**
 * `mov dst, [base]` of `width` bytes (8A /r; 66 8B /r; 8B /r; REX.W 8B /r). A 4-byte load zeroes
 * bits 63:32 of dst; 1- and 2-byte loads leave bits 63:8 or 63:16 unchanged.
 */
export function load(width: Width, dst: Reg, base: Reg): Bytes {
  const b = code(base)
  const d = code(dst)
  const prefix = width === 2 ? [0x66] : []
  const opcode = width === 1 ? 0x8a : 0x8b
  return [...prefix, ...rex(width === 8, d, b, width === 1 ? d : undefined), opcode, ...memory(d, b)]
}

/** `cmp a, b` on 64-bit registers (REX.W 39 /r, r/m = a): flags from a - b. */
export function cmpRegReg(a: Reg, b: Reg): Bytes {
  const x = code(a)
  const y = code(b)
  return [...rex(true, y, x), 0x39, modrm(3, y, x)]
}

/** `cmp byte [base], imm8` (80 /7 ib). */
export function cmpMem8Imm8(base: Reg, imm: number): Bytes {
  if (!Number.isInteger(imm) || imm < 0 || imm > 0xff) throw new RangeError(`cmp byte [r], imm8: ${imm} is not a byte`)
  const b = code(base)
  return [...rex(false, 0, b), 0x80, ...memory(7, b), imm]
}

/** `add dst, src` on 64-bit registers (REX.W 01 /r, r/m = dst). */
export function addRegReg(dst: Reg, src: Reg): Bytes {
  const d = code(dst)
  const s = code(src)
  return [...rex(true, s, d), 0x01, modrm(3, s, d)]
}

/** `add r64, imm8` sign-extended (REX.W 83 /0 ib). */
export function addImm8(dst: Reg, imm: number): Bytes {
  checkImm8(imm, 'add r64, imm8')
  const d = code(dst)
  return [...rex(true, 0, d), 0x83, modrm(3, 0, d), imm & 0xff]
}

/** `sub r64, imm8` sign-extended (REX.W 83 /5 ib). Used where `dec` would do, to stay on the list of measured instructions. */
export function subImm8(dst: Reg, imm: number): Bytes {
  checkImm8(imm, 'sub r64, imm8')
  const d = code(dst)
  return [...rex(true, 0, d), 0x83, modrm(3, 5, d), imm & 0xff]
}

/** `jmp rel32` (E9 cd): `rel` counts from the end of this 5-byte instruction. */
export function jmpRel32(rel: number): Bytes {
  checkRel32(rel, 'jmp rel32')
  return [0xe9, ...le(BigInt.asUintN(32, BigInt(rel)), 4)]
}

/** `jcc rel32` (0F 80+cc cd): `rel` counts from the end of this 6-byte instruction. */
export function jccRel32(cc: Condition, rel: number): Bytes {
  checkRel32(rel, `j${cc} rel32`)
  return [0x0f, 0x80 + CONDITIONS[cc], ...le(BigInt.asUintN(32, BigInt(rel)), 4)]
}

/** `lidt [base]` (0F 01 /3): loads IDTR from the 10-byte pseudo-descriptor at base (limit u16, base u64). */
export function lidt(base: Reg): Bytes {
  const b = code(base)
  return [...rex(false, 0, b), 0x0f, 0x01, ...memory(3, b)]
}

/** `rep stosb` (F3 AA): stores al at [rdi], rcx times, rdi going up (RFLAGS.DF = 0). */
export const REP_STOSB: Bytes = [0xf3, 0xaa]

/** `out dx, eax` (EF): a 4-byte write to port dx; KVM exits with KVM_EXIT_IO, size 4, count 1. */
export const OUT_DX_EAX: Bytes = [0xef]

/** `hlt` (F4): without an in-kernel local APIC, KVM exits to userspace with KVM_EXIT_HLT. */
export const HLT: Bytes = [0xf4]

/** Byte length of `jmp rel32` and `jcc rel32`, for fix-ups. */
export const JMP_REL32_LENGTH = 5
export const JCC_REL32_LENGTH = 6
