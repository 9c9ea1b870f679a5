// The vCPU's part of the contract to and from kvmconf.proto's messages (convert.ts's rules): guest
// programs, KVM_RUN's options and exits, KVM_PRE_FAULT_MEMORY's result and the program step.

import type { PreFaultResult, RunOptions, VcpuExit } from '../../harness/backend.ts'
import type { GuestProgram, GuestStep } from '../../harness/guest-program.ts'
import {
  bytesFrom, fromInt, fromOptInt, int32Out, MalformedMessage, num, optBytesArg, optNum, toInt, toOptInt, u64From, u64Out,
} from './convert.ts'
import type { GuestStepMsg, PreFaultMsg, ProgramStepMsg, RunMsg, VcpuExitMsg } from './protocol.ts'

// ---------------------------------------------------------------------------------------------------
// Guest programs

function optional<K extends string, V>(key: K, v: V | undefined): { [P in K]?: V } {
  return (v === undefined ? {} : { [key]: v }) as { [P in K]?: V }
}

export function toGuestStep(s: GuestStep, i: number): GuestStepMsg {
  const at = `steps[${i}]`
  switch (s.op) {
    case 'write':
      return { write: { gva: toInt(s.gva, `${at}.gva`), value: toOptInt(s.value, `${at}.value`),
        width: optNum(s.width, `${at}.width`), expectFault: s.expectFault } }
    case 'read':
      return { read: { gva: toInt(s.gva, `${at}.gva`), width: optNum(s.width, `${at}.width`), expectFault: s.expectFault } }
    case 'spin_while_eq':
      return { spinWhileEq: { gva: toInt(s.gva, `${at}.gva`), value: toInt(s.value, `${at}.value`) } }
    case 'signal':
      return { signal: { port: num(s.port, `${at}.port`), value: toOptInt(s.value, `${at}.value`) } }
    case 'touch_pages':
      return { touchPages: { gva: toInt(s.gva, `${at}.gva`), pages: num(s.pages, `${at}.pages`),
        stride: num(s.stride, `${at}.stride`), write: Boolean(s.write), value: toInt(s.value, `${at}.value`) } }
    case 'fill':
      return { fill: { gva: toInt(s.gva, `${at}.gva`), length: num(s.length, `${at}.length`), byte: num(s.byte, `${at}.byte`) } }
    case 'check':
      return { check: { gva: toInt(s.gva, `${at}.gva`), length: num(s.length, `${at}.length`), byte: num(s.byte, `${at}.byte`) } }
    case 'lidt':
      return { lidt: { base: toInt(s.base, `${at}.base`), limit: num(s.limit, `${at}.limit`) } }
    case 'jump':
      return { jump: { to: num(s.to, `${at}.to`) } }
    case 'hlt':
      return { hlt: {} }
    default:
      // loadProgram's own rule for a step it cannot place (harness/guest-program.ts).
      throw new RangeError(`step ${i} (${String((s as { op?: unknown }).op)}): unknown op`)
  }
}

export function fromGuestStep(m: GuestStepMsg, i: number): GuestStep {
  const at = `steps[${i}]`
  switch (m.op) {
    case 'write': {
      const w = m.write
      return { op: 'write', gva: fromInt(w.gva, `${at}.gva`), ...optional('value', fromOptInt(w.value, `${at}.value`)),
        ...optional('width', w.width as 1 | 2 | 4 | 8 | undefined), ...optional('expectFault', w.expectFault) }
    }
    case 'read': {
      const r = m.read
      return { op: 'read', gva: fromInt(r.gva, `${at}.gva`), ...optional('width', r.width as 1 | 2 | 4 | 8 | undefined),
        ...optional('expectFault', r.expectFault) }
    }
    case 'spinWhileEq':
      return { op: 'spin_while_eq', gva: fromInt(m.spinWhileEq.gva, `${at}.gva`), value: fromInt(m.spinWhileEq.value, `${at}.value`) }
    case 'signal':
      return { op: 'signal', port: m.signal.port, ...optional('value', fromOptInt(m.signal.value, `${at}.value`)) }
    case 'touchPages': {
      const t = m.touchPages
      return { op: 'touch_pages', gva: fromInt(t.gva, `${at}.gva`), pages: t.pages, stride: t.stride, write: t.write,
        value: fromInt(t.value, `${at}.value`) }
    }
    case 'fill':
      return { op: 'fill', gva: fromInt(m.fill.gva, `${at}.gva`), length: m.fill.length, byte: m.fill.byte }
    case 'check':
      return { op: 'check', gva: fromInt(m.check.gva, `${at}.gva`), length: m.check.length, byte: m.check.byte }
    case 'lidt':
      return { op: 'lidt', base: fromInt(m.lidt.base, `${at}.base`), limit: m.lidt.limit }
    case 'jump':
      return { op: 'jump', to: m.jump.to }
    case 'hlt':
      return { op: 'hlt' }
    default:
      throw new MalformedMessage(`${at}: no op`)
  }
}

export function toProgram(p: GuestProgram): GuestStepMsg[] {
  if (typeof p !== 'object' || p === null || !Array.isArray(p.steps)) throw new TypeError('program: expected { steps: [...] }')
  return p.steps.map(toGuestStep)
}

export function fromProgram(steps: GuestStepMsg[]): GuestProgram {
  return { steps: steps.map(fromGuestStep) }
}

// ---------------------------------------------------------------------------------------------------
// KVM_RUN: options in, exits out

export function toRunOptions(o: RunOptions): RunMsg {
  return { timeoutMs: optNum(o.timeoutMs, 'timeoutMs'), mmioData: optBytesArg(o.mmioData, 'mmioData'), ioData: optBytesArg(o.ioData, 'ioData') }
}

export function fromRunOptions(m: RunMsg): RunOptions {
  return {
    ...optional('timeoutMs', m.timeoutMs),
    ...optional('mmioData', m.mmioData === undefined ? undefined : bytesFrom(m.mmioData)),
    ...optional('ioData', m.ioData === undefined ? undefined : bytesFrom(m.ioData)),
  }
}

export function toExit(e: VcpuExit): VcpuExitMsg {
  switch (e.kind) {
    case 'io':
      return { io: { port: int32Out(e.port, 'io.port'), size: int32Out(e.size, 'io.size'),
        direction: e.direction === 'out' ? 'IO_DIRECTION_OUT' : 'IO_DIRECTION_IN', count: int32Out(e.count, 'io.count'), data: e.data } }
    case 'mmio':
      return { mmio: { physAddr: u64Out(e.physAddr, 'mmio.physAddr'), len: int32Out(e.len, 'mmio.len'), isWrite: e.isWrite, data: e.data } }
    case 'hlt':
      return { hlt: {} }
    case 'shutdown':
      return { shutdown: {} }
    case 'intr':
      return { intr: {} }
    case 'internal_error':
      return { internalError: { suberror: int32Out(e.suberror, 'internal_error.suberror'),
        data: e.data.map((d, i) => u64Out(d, `internal_error.data[${i}]`)) } }
    case 'memory_fault':
      return { memoryFault: { errno: e.errno, flags: u64Out(e.flags, 'memory_fault.flags'),
        gpa: u64Out(e.gpa, 'memory_fault.gpa'), size: u64Out(e.size, 'memory_fault.size') } }
    case 'fail_entry':
      return { failEntry: { reason: u64Out(e.reason, 'fail_entry.reason') } }
    case 'other':
      return { other: { exitReason: int32Out(e.exitReason, 'other.exitReason') } }
  }
}

export function fromExit(m: VcpuExitMsg | null): VcpuExit {
  switch (m?.kind) {
    case 'io':
      return { kind: 'io', port: m.io.port, size: m.io.size, direction: m.io.direction === 'IO_DIRECTION_OUT' ? 'out' : 'in',
        count: m.io.count, data: bytesFrom(m.io.data) }
    case 'mmio':
      return { kind: 'mmio', physAddr: u64From(m.mmio.physAddr, 'mmio.physAddr'), len: m.mmio.len, isWrite: m.mmio.isWrite,
        data: bytesFrom(m.mmio.data) }
    case 'hlt':
    case 'shutdown':
    case 'intr':
      return { kind: m.kind }
    case 'internalError':
      return { kind: 'internal_error', suberror: m.internalError.suberror,
        data: m.internalError.data.map((d, i) => u64From(d, `internal_error.data[${i}]`)) }
    case 'memoryFault': {
      const f = m.memoryFault
      if (f.errno !== 'EFAULT' && f.errno !== 'EHWPOISON') throw new MalformedMessage(`memory_fault.errno: ${f.errno}`)
      return { kind: 'memory_fault', errno: f.errno, flags: u64From(f.flags, 'memory_fault.flags'),
        gpa: u64From(f.gpa, 'memory_fault.gpa'), size: u64From(f.size, 'memory_fault.size') }
    }
    case 'failEntry':
      return { kind: 'fail_entry', reason: u64From(m.failEntry.reason, 'fail_entry.reason') }
    case 'other':
      return { kind: 'other', exitReason: m.other.exitReason }
    default:
      throw new MalformedMessage('exit: no kind')
  }
}

// ---------------------------------------------------------------------------------------------------
// KVM_PRE_FAULT_MEMORY and the program step

export function toPreFault(r: PreFaultResult): PreFaultMsg {
  const gpa = u64Out(r.gpa, 'gpa')
  const size = u64Out(r.size, 'size')
  if (r.ok) return { ok: true, code: '', errno: 0, gpa, size }
  return { ok: false, code: r.error.code, errno: int32Out(r.error.errno, 'errno', true), gpa, size }
}

export function fromPreFault(m: PreFaultMsg | null): PreFaultResult {
  if (m === null) throw new MalformedMessage('pre_fault: missing')
  const gpa = u64From(m.gpa, 'gpa')
  const size = u64From(m.size, 'size')
  return m.ok ? { ok: true, gpa, size } : { ok: false, error: { code: m.code, errno: m.errno }, gpa, size }
}
export function toProgramStep(s: number | 'halt' | null): ProgramStepMsg {
  if (s === null) return { outside: {} }
  if (s === 'halt') return { halt: {} }
  return { index: int32Out(s, 'step') }
}

export function fromProgramStep(m: ProgramStepMsg | null): number | 'halt' | null {
  switch (m?.at) {
    case 'index':
      return m.index
    case 'halt':
      return 'halt'
    case 'outside':
      return null
    default:
      throw new MalformedMessage('step: missing')
  }
}

/** findMismatch(): the offset, or -1n (unset) when every byte matched. */