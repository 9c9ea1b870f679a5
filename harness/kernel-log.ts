// The kernel log around a test, as kirk reads it: markers in /dev/kmsg, the taint mask before and after.
//
// Before a test the watcher drains /dev/kmsg (so older lines are not blamed on it), reads
// /proc/sys/kernel/tainted and writes a start marker; after it, it writes an end marker, reads every
// record logged since, keeps the lines between the two markers, and reads the taint mask again. A line
// that is a WARN_ON splat, an oops or a BUG, or a taint bit the test added, makes the test WARN.
// Ordinary pr_warn() lines (KVM's "debugfs: duplicate directory", rate-limited guest MSR noise) are
// attached to the test but do not count: a WARN is about the kernel's own assertions, not its chatter.
//
// Markers are written through a fresh open of /dev/kmsg each time: the kernel rate-limits writes per
// open file (printk_devkmsg=ratelimit: 10 lines per 5 s), and a dropped marker would misattribute lines.
// Lines are only attributable when one test runs at a time, so `kvmconf run --kmsg` runs files serially.

import { closeSync, constants, openSync, readFileSync, readSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import type { KernelLog } from './results.ts'

export const KMSG = '/dev/kmsg'
export const TAINTED = '/proc/sys/kernel/tainted'

/** One /dev/kmsg record: "<prio>,<seq>,<usec>,<flags>[,...];<text>\n[ KEY=value\n...]". */
export interface KmsgRecord {
  level: number
  seq: number
  text: string
}

export function parseKmsgRecord(raw: string): KmsgRecord | undefined {
  const semi = raw.indexOf(';')
  if (semi < 0) return undefined
  const [prio, seq] = raw.slice(0, semi).split(',')
  // Continuation lines (" KEY=value" dictionary entries) follow the text after a newline.
  const text = raw.slice(semi + 1).split('\n')[0] ?? ''
  return { level: Number(prio) & 7, seq: Number(seq), text: text.replace(/\\x([0-9a-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))) }
}

// What kirk, syzkaller and the kernel's own tooling treat as "the kernel is not happy". (A splat's
// "------------[ cut here ]------------" line is followed by its WARNING: or BUG: line, which counts.)
const SPLAT = [
  /^WARNING: /,
  /^BUG: /,
  /^kernel BUG at /,
  /^Oops[: ]/,
  /^general protection fault/,
  /^Unable to handle kernel /,
  /^UBSAN: /,
  /^KASAN: /,
  /^KCSAN: /,
  /^refcount_t: /,
  /^list_(add|del) corruption/,
  /^watchdog: BUG: soft lockup/,
  /^INFO: task .* blocked for more than/,
  /^rcu: INFO: rcu_.* detected stall/,
  /^Kernel panic/,
]

export function isWarning(text: string): boolean {
  return SPLAT.some((re) => re.test(text))
}

// include/linux/panic.h TAINT_* bits, as Documentation/admin-guide/tainted-kernels.rst lists them.
const TAINT_FLAGS = 'PFSRMBUDAWCIOELKXTNJ'

/** `/proc/sys/kernel/tainted` as the kernel prints it in oopses: `W` for bit 9 and so on. */
export function taintLetters(mask: number): string {
  let s = ''
  for (let bit = 0; bit < TAINT_FLAGS.length; bit++) if (mask & (1 << bit)) s += TAINT_FLAGS[bit]
  return s
}

export function readTaint(file = TAINTED): number {
  return Number(readFileSync(file, 'utf8').trim())
}

/** Whether a kernel log makes a test WARN: a splat line, or a taint bit set during the test. */
export function kernelWarned(log: KernelLog): boolean {
  return log.warnings.length > 0 || (log.taintAfter & ~log.taintBefore) !== 0
}

/** Why a test WARNs, in one line. */
export function describeKernelLog(log: KernelLog): string {
  const added = log.taintAfter & ~log.taintBefore
  const parts: string[] = []
  if (log.warnings.length > 0) parts.push(`the kernel logged ${log.warnings[0]}${log.warnings.length > 1 ? ` (+${log.warnings.length - 1} more)` : ''}`)
  if (added !== 0) parts.push(`the kernel became tainted (${taintLetters(added)}, tainted=${log.taintAfter})`)
  return parts.join('; ')
}

/**
 * Why this process cannot watch the kernel log (read /dev/kmsg and the taint mask, write markers), or
 * undefined when it can.
 */
export function kernelLogProblem(kmsg = KMSG, tainted = TAINTED): string | undefined {
  for (const [file, flags, what] of [[kmsg, 'r', 'read'], [tainted, 'r', 'read'], [kmsg, 'w', 'write markers to']] as const) {
    try {
      closeSync(openSync(file, flags))
    } catch (e) {
      return `cannot ${what} ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`
    }
  }
  return undefined
}

/** Reads /dev/kmsg records from a non-blocking fd until there are none left. */
function drain(fd: number): KmsgRecord[] {
  const buf = Buffer.alloc(16384) // a record is at most ~8 KiB (PRINTKRB_RECORD_MAX); a short buffer gets EINVAL
  const records: KmsgRecord[] = []
  for (;;) {
    let n: number
    try {
      n = readSync(fd, buf, 0, buf.length, null)
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      if (code === 'EAGAIN') return records
      if (code === 'EPIPE') continue // records were overwritten before we read them; go on from the oldest kept
      throw e
    }
    if (n === 0) return records
    const rec = parseKmsgRecord(buf.toString('utf8', 0, n))
    if (rec !== undefined) records.push(rec)
  }
}

/**
 * A backend that watches the kernel log of the machine it drives, for `kvmconf run --kmsg` (the remote
 * backend, through an agent started with --kmsg): start before a test, finish after it.
 */
export interface KernelLogSource {
  kernelLogStart(test: string): Promise<void>
  kernelLogFinish(test: string): Promise<KernelLog>
}

/** One worker's view of the kernel log: start() before a test, finish() after it. */
export class KernelLogWatcher {
  private fd: number | undefined
  private marker = ''
  private taintBefore = 0

  constructor(
    private readonly kmsg = KMSG,
    private readonly tainted = TAINTED,
  ) {}

  /** Opens /dev/kmsg for reading; throws (EACCES, ENOENT) when the kernel log cannot be read. */
  open(): void {
    this.fd ??= openSync(this.kmsg, constants.O_RDONLY | constants.O_NONBLOCK)
  }

  private write(line: string): void {
    writeFileSync(this.kmsg, `${line}\n`)
  }

  start(test: string): void {
    this.open()
    drain(this.fd as number)
    this.taintBefore = readTaint(this.tainted)
    this.marker = `kvmconf[${process.pid}:${randomBytes(4).toString('hex')}]`
    this.write(`${this.marker}: start ${test}`)
  }

  finish(test: string): KernelLog {
    this.write(`${this.marker}: end ${test}`)
    const records = drain(this.fd as number)
    const taintAfter = readTaint(this.tainted)
    const start = records.findIndex((r) => r.text.startsWith(`${this.marker}: start`))
    const end = records.findIndex((r) => r.text.startsWith(`${this.marker}: end`))
    const inside = records.slice(start + 1, end < 0 ? undefined : end)
    const lines = inside.map((r) => `<${r.level}> ${r.text}`)
    return { lines, warnings: inside.filter((r) => isWarning(r.text)).map((r) => r.text), taintBefore: this.taintBefore, taintAfter }
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd)
    this.fd = undefined
  }
}
