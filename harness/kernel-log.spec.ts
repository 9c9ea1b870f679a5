import { accessSync, constants } from 'node:fs'
import { describe, expect, test } from 'vitest'
import { KMSG, KernelLogWatcher, describeKernelLog, isWarning, kernelWarned, parseKmsgRecord, taintLetters } from './kernel-log.ts'

describe('kernel log', () => {
  test('records: level, sequence, text with \\x escapes undone, dictionary lines dropped', () => {
    expect(parseKmsgRecord('4,345,1300828966,-;KVM: debugfs: duplicate directory 13753-20\n')).toEqual({ level: 4, seq: 345, text: 'KVM: debugfs: duplicate directory 13753-20' })
    expect(parseKmsgRecord('12,7,1,-;kvmconf\\x3a tab\\x09here\n SUBSYSTEM=kvm\n')).toEqual({ level: 4, seq: 7, text: 'kvmconf: tab\there' })
    expect(parseKmsgRecord('no separator')).toBeUndefined()
  })

  test('splats count as warnings, pr_warn chatter does not', () => {
    expect(isWarning('WARNING: CPU: 1 PID: 42 at arch/x86/kvm/mmu/mmu.c:7000 kvm_mmu_zap_all+0x1/0x2')).toBe(true)
    expect(isWarning('BUG: unable to handle page fault for address: 0000000000001000')).toBe(true)
    expect(isWarning('general protection fault, probably for non-canonical address 0xdead: 0000 [#1] SMP')).toBe(true)
    expect(isWarning('KVM: debugfs: duplicate directory 7998-20')).toBe(false)
    expect(isWarning('kvm-pvm: triple fault delivering vec=8 err=0 cpl=0 rip=80017')).toBe(false)
  })

  test('taint: letters as oopses print them, and only bits the test added count', () => {
    expect(taintLetters(512)).toBe('W')
    expect(taintLetters(4097)).toBe('PO')
    const quiet = { lines: ['<4> KVM: debugfs: duplicate directory 1-2'], warnings: [], taintBefore: 4096, taintAfter: 4096 }
    expect(kernelWarned(quiet)).toBe(false)
    expect(kernelWarned({ ...quiet, taintAfter: 4096 | 512 })).toBe(true)
    expect(describeKernelLog({ ...quiet, taintAfter: 4096 | 512 })).toBe('the kernel became tainted (W, tainted=4608)')
  })

  test('the watcher attributes lines between its markers on this machine', ({ skip }) => {
    try {
      accessSync(KMSG, constants.R_OK | constants.W_OK)
    } catch (e) {
      skip(`${KMSG} is not readable and writable here: ${(e as NodeJS.ErrnoException).code}`)
    }
    const w = new KernelLogWatcher()
    try {
      w.start('kernel-log.spec')
      const log = w.finish('kernel-log.spec')
      // Other processes may log meanwhile; our own markers must not be among the lines.
      expect(log.lines.some((l) => l.includes(': start kernel-log.spec') || l.includes(': end kernel-log.spec'))).toBe(false)
      expect(log.taintAfter).toBeGreaterThanOrEqual(0)
    } finally {
      w.close()
    }
  })
})
