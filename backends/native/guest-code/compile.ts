// The guest-program compiler: a GuestProgram (harness/guest-program.ts) in, everything KVM needs to start
// the vCPU in 64-bit long mode out, as bytes: the boot memslot's contents and the KVM_SET_REGS and
// KVM_SET_SREGS buffers. Pure: no I/O, no addon.
//
// Register use in the generated code:
//   rbx  acc, the program's accumulator (0 at entry, from KVM_SET_REGS)
//   rsi  the address a step works on (rdi for rep stosb)
//   rax  the value to store or compare; eax is what `out` sends
//   rcx  loop count; rdx the port of `out`, the stride of touch_pages
// Each step's code is a straight sequence, or a loop of at most five instructions per iteration, because
// PVM hosts emulate every guest instruction (about 4 M/s, shared/reference/host-kvm.md).

import type { U64In } from '../../../harness/backend.ts'
import type { GuestProgram, GuestStep } from '../../../harness/guest-program.ts'
import { Assembler, type Label } from './assembler.ts'
import { StepChecker } from '../../../harness/guest-program-check.ts'
import {
  BOOT_SLOT, BOOT_SLOT_GPA, BOOT_SLOT_SIZE, CODE_SIZE, LIDT_DESCRIPTOR_STRIDE,
  LIDT_DESCRIPTORS_MAX, initialRegsBytes, initialSregsBytes, sharedBootBytesView, vcpuArea,
  vcpuAreaBytes,
} from './boot-image.ts'
import {
  HLT, OUT_DX_EAX, REP_STOSB, addImm8, addRegReg, cmpMem8Imm8, cmpRegReg, lidt, load, movImm, movImm32,
  movRegReg, store, subImm8,
} from './encoder.ts'

export interface CompileOptions {
  /**
   * The KVM vCPU id the program runs on (default 0): it picks the vCPU's area of the boot slot (code,
   * lidt descriptors, stack; ids 0..MAX_VCPU_ID) and the BSP bit of apic_base.
   */
  vcpuId?: number
}

/** Bytes to write at `gpa` (inside the boot slot). */
export interface BootWrite {
  gpa: bigint
  bytes: Uint8Array
}

/** Where the steps' code landed (GVA = GPA). */
export interface GuestLabels {
  /** The first instruction of each step; a step that emits no code shares its address with the next. */
  steps: bigint[]
  /** The `hlt` appended after the last step (followed by a jump back to it). */
  halt: bigint
  /** One past the last code byte. */
  end: bigint
}

export interface CompiledGuest {
  /**
   * Memslot 0 at GPA 0, `size` bytes, and its whole contents for this program: the shared tables and
   * this vCPU's area, zeros elsewhere. Fine for a VM with one vCPU; with several, write `writes`, which
   * leave the other vCPUs' areas alone.
   */
  bootSlot: { slot: typeof BOOT_SLOT; gpa: bigint; size: bigint; bytes: Uint8Array }
  /**
   * The same contents in two pieces: [0] the part every program shares (page tables, GDT, TSS, IDT;
   * identical across programs and vCPUs: one instance for all, read-only by convention), [1] this vCPU's
   * area.
   */
  writes: [BootWrite, BootWrite]
  /** struct kvm_regs for KVM_SET_REGS (144 bytes): RIP = codeGpa, RSP = the area's stack top, RFLAGS 0x2. */
  regs: Uint8Array
  /** struct kvm_sregs for KVM_SET_SREGS (312 bytes): long mode, flat segments, TSS, zeroed IDT. */
  sregs: Uint8Array
  /** Where the code starts: the initial RIP. */
  codeGpa: bigint
  /** The code alone (also inside `bootSlot.bytes` at codeGpa). */
  code: Uint8Array
  labels: GuestLabels
}

const U32_MAX = 0xffff_ffffn

/**
 * Compiles `program` for vCPU `options.vcpuId`. Throws a RangeError `step <index> (<op>): ...` for an
 * invalid step, and one naming the program when its code or its lidt steps do not fit the vCPU's area.
 */
export function compileGuestProgram(program: GuestProgram, options: CompileOptions = {}): CompiledGuest {
  const vcpuId = options.vcpuId ?? 0
  const area = vcpuArea(vcpuId)
  const steps: readonly GuestStep[] = program.steps
  if (!Array.isArray(steps)) throw new RangeError('guest program: steps must be an array')

  const a = new Assembler()
  const stepLabels: Label[] = steps.map((_, i) => a.label(`step ${i}`))
  const lidtDescriptors: { base: bigint; limit: number }[] = []

  steps.forEach((step, index) => {
    const isObject = typeof step === 'object' && step !== null
    const c: StepChecker = new StepChecker(index, isObject ? String((step as { op?: unknown }).op) : typeof step)
    if (!isObject) c.fail('a step must be an object')
    a.bind(stepLabels[index] as Label)
    switch (step.op) {
      case 'write': {
        const width = c.width(step.width)
        const gva = c.u64('gva', step.gva)
        if (step.expectFault === undefined || !c.bool('expectFault', step.expectFault)) c.mapped('gva', gva, BigInt(width))
        const value = step.value === undefined ? null : c.u64('value', step.value, (1n << BigInt(8 * width)) - 1n)
        a.emit(movImm('rsi', gva))
        if (value === null) {
          a.emit(store(width, 'rsi', 'rbx'))
        } else {
          a.emit(movImm('rax', value))
          a.emit(store(width, 'rsi', 'rax'))
        }
        break
      }
      case 'read': {
        const width = c.width(step.width)
        const gva = c.u64('gva', step.gva)
        if (step.expectFault === undefined || !c.bool('expectFault', step.expectFault)) c.mapped('gva', gva, BigInt(width))
        a.emit(movImm('rsi', gva))
        // A 1- or 2-byte load keeps the register's upper bits, so clear acc first; a 4-byte one zeroes them.
        if (width < 4) a.emit(movImm32('rbx', 0n))
        a.emit(load(width, 'rbx', 'rsi'))
        break
      }
      case 'spin_while_eq': {
        const gva = c.u64('gva', step.gva)
        const value = c.u64('value', step.value)
        c.mapped('gva', gva, 8n)
        const again = a.label(`step ${index} spin`)
        a.emit(movImm('rsi', gva))
        a.emit(movImm('rax', value))
        a.bind(again)
        a.emit(load(8, 'rbx', 'rsi'))
        a.emit(cmpRegReg('rbx', 'rax'))
        a.jcc('e', again)
        break
      }
      case 'signal': {
        const port = c.int('port', step.port, 0xffff)
        a.emit(movImm32('rdx', BigInt(port)))
        if (step.value === undefined) a.emit(movRegReg(4, 'rax', 'rbx'))
        else a.emit(movImm32('rax', c.u64('value', step.value, U32_MAX)))
        a.emit(OUT_DX_EAX)
        break
      }
      case 'touch_pages': {
        const gva = c.u64('gva', step.gva)
        const pages = BigInt(c.int('pages', step.pages, Number.MAX_SAFE_INTEGER))
        const stride = BigInt(c.int('stride', step.stride, Number.MAX_SAFE_INTEGER))
        const write = c.bool('write', step.write)
        const value = c.u64('value', step.value)
        if (pages === 0n) break
        c.mapped('the last page touched', gva + (pages - 1n) * stride, 8n)
        const next = a.label(`step ${index} page`)
        a.emit(movImm('rsi', gva))
        a.emit(movImm('rcx', pages))
        a.emit(movImm('rdx', stride))
        if (write) a.emit(movImm('rax', value))
        a.bind(next)
        a.emit(write ? store(8, 'rsi', 'rax') : load(8, 'rbx', 'rsi'))
        a.emit(addRegReg('rsi', 'rdx'))
        a.emit(subImm8('rcx', 1))
        a.jcc('ne', next)
        break
      }
      case 'fill': {
        const gva = c.u64('gva', step.gva)
        const length = BigInt(c.int('length', step.length, Number.MAX_SAFE_INTEGER))
        const byte = c.int('byte', step.byte, 0xff)
        c.mapped('range', gva, length)
        a.emit(movImm('rdi', gva))
        a.emit(movImm('rcx', length))
        a.emit(movImm32('rax', BigInt(byte)))
        a.emit(REP_STOSB)
        break
      }
      case 'check': {
        const gva = c.u64('gva', step.gva)
        const length = BigInt(c.int('length', step.length, Number.MAX_SAFE_INTEGER))
        const byte = c.int('byte', step.byte, 0xff)
        c.mapped('range', gva, length)
        a.emit(movImm32('rbx', 0n))
        if (length === 0n) break
        const next = a.label(`step ${index} byte`)
        const same = a.label(`step ${index} same`)
        a.emit(movImm('rsi', gva))
        a.emit(movImm('rcx', length))
        a.bind(next)
        a.emit(cmpMem8Imm8('rsi', byte))
        a.jcc('e', same)
        a.emit(addImm8('rbx', 1))
        a.bind(same)
        a.emit(addImm8('rsi', 1))
        a.emit(subImm8('rcx', 1))
        a.jcc('ne', next)
        break
      }
      case 'lidt': {
        const base = c.u64('base', step.base)
        const limit = c.int('limit', step.limit, 0xffff)
        c.mapped('table', base, BigInt(limit) + 1n)
        if (lidtDescriptors.length === LIDT_DESCRIPTORS_MAX) c.fail(`more than ${LIDT_DESCRIPTORS_MAX} lidt steps`)
        const at = area.lidtDescriptorsGpa + BigInt(lidtDescriptors.length * LIDT_DESCRIPTOR_STRIDE)
        lidtDescriptors.push({ base, limit })
        a.emit(movImm('rsi', at))
        a.emit(lidt('rsi'))
        break
      }
      case 'jump': {
        const to = c.int('to', step.to, Number.MAX_SAFE_INTEGER)
        const target = stepLabels[to]
        if (target === undefined) c.fail(`to ${to}: there is no step ${to} (the program has ${steps.length})`)
        a.jmp(target)
        break
      }
      case 'hlt':
        a.emit(HLT)
        break
      default:
        c.fail(`unknown op`)
    }
  })

  const halt = a.label('halt')
  a.bind(halt)
  a.emit(HLT)
  a.jmp(halt)

  const assembled = a.finish()
  const code = assembled.code
  if (code.length > CODE_SIZE) {
    throw new RangeError(`guest program: ${code.length} bytes of code do not fit in the vCPU's ${CODE_SIZE}`)
  }
  const at = (label: Label): bigint => area.codeGpa + BigInt(assembled.labels.get(label) as number)

  const shared = sharedBootBytesView()
  const areaOffset = Number(area.gpa)
  const areaBytes = vcpuAreaBytes(code, lidtDescriptors)
  // The whole 2 MiB image only when asked for: loading a program writes the two pieces, and building
  // the image for every load cost more than the rest of compiling it.
  let image: Uint8Array | undefined
  const bootSlot = {
    slot: BOOT_SLOT as typeof BOOT_SLOT, gpa: BOOT_SLOT_GPA, size: BigInt(BOOT_SLOT_SIZE),
    get bytes(): Uint8Array {
      if (image === undefined) {
        image = new Uint8Array(BOOT_SLOT_SIZE)
        image.set(shared, 0)
        image.set(areaBytes, areaOffset)
      }
      return image
    },
  }

  return {
    bootSlot,
    writes: [
      { gpa: 0n, bytes: shared },
      { gpa: area.gpa, bytes: areaBytes },
    ],
    regs: initialRegsBytes(vcpuId),
    sregs: initialSregsBytes(vcpuId),
    codeGpa: area.codeGpa,
    code: code.slice(),
    labels: { steps: stepLabels.map(at), halt: at(halt), end: area.codeGpa + BigInt(code.length) },
  }
}

/** Which step the instruction at `gpa` belongs to: an index, 'halt' for the appended hlt loop, or undefined outside the code. */
export function stepAt(labels: GuestLabels, gpa: U64In): number | 'halt' | undefined {
  const x = BigInt(gpa)
  if (x >= labels.halt && x < labels.end) return 'halt'
  for (let i = labels.steps.length - 1; i >= 0; i--) {
    const start = labels.steps[i] as bigint
    const stop = labels.steps[i + 1] ?? labels.halt
    if (x >= start && x < stop) return i
  }
  return undefined
}
