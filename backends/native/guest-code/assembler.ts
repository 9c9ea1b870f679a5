// An instruction buffer with labels: the compiler emits encoder.ts instructions into it and jumps to
// labels that are bound before or after the jump. Every jump is rel32, so an instruction's length never
// depends on where its target lands and one pass plus fix-ups is enough.
//
// The assembler also records where each instruction starts, so the compiler's self-tests (and a
// failing test's report) can check that a branch lands on an instruction boundary.

import { JCC_REL32_LENGTH, JMP_REL32_LENGTH, jccRel32, jmpRel32, type Bytes, type Condition } from './encoder.ts'

/** A position in the code, bound once. `name` is for messages only. */
export interface Label {
  readonly name: string
}

interface Fixup {
  /** Offset of the instruction's first byte. */
  at: number
  length: number
  label: Label
  cc: Condition | null
}

export interface Assembled {
  code: Uint8Array
  /** Offset of every instruction's first byte, in order. */
  instructionStarts: number[]
  /** Where each label was bound. */
  labels: Map<Label, number>
}

export class Assembler {
  private readonly bytes: number[] = []
  private readonly starts: number[] = []
  private readonly bound = new Map<Label, number>()
  private readonly fixups: Fixup[] = []

  /** Offset of the next instruction. */
  get offset(): number {
    return this.bytes.length
  }

  /** Appends one instruction. */
  emit(instruction: Bytes): void {
    this.starts.push(this.bytes.length)
    for (const b of instruction) this.bytes.push(b)
  }

  label(name: string): Label {
    return { name }
  }

  /** Binds `label` to the next instruction's offset. */
  bind(label: Label): void {
    if (this.bound.has(label)) throw new Error(`label ${label.name} is bound twice`)
    this.bound.set(label, this.bytes.length)
  }

  /** `jmp rel32` to `label`. */
  jmp(label: Label): void {
    this.fixups.push({ at: this.bytes.length, length: JMP_REL32_LENGTH, label, cc: null })
    this.emit(jmpRel32(0))
  }

  /** `jcc rel32` to `label`. */
  jcc(cc: Condition, label: Label): void {
    this.fixups.push({ at: this.bytes.length, length: JCC_REL32_LENGTH, label, cc })
    this.emit(jccRel32(cc, 0))
  }

  /** Resolves every jump; throws if a label was never bound. */
  finish(): Assembled {
    const code = Uint8Array.from(this.bytes)
    for (const f of this.fixups) {
      const target = this.bound.get(f.label)
      if (target === undefined) throw new Error(`label ${f.label.name} is used but never bound`)
      const rel = target - (f.at + f.length)
      code.set(f.cc === null ? jmpRel32(rel) : jccRel32(f.cc, rel), f.at)
    }
    return { code, instructionStarts: [...this.starts], labels: new Map(this.bound) }
  }
}
