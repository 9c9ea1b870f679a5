import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { describe, expect, test } from 'vitest'
import {
  EXPECTATIONS_DIR,
  applies,
  conditionFor,
  expectationFor,
  inVersionRange,
  judgeRecords,
  loadExpectations,
  matches,
  parseExpectations,
  readExpectationFile,
  renderExpectations,
  strictKernelLog,
  updateExpectations,
  type Expectation,
} from './expectations.ts'
import type { RunResult, TestRecord } from './results.ts'

const entry: Expectation = {
  test: 'set_memory_region_test > test_mmio_during_vectoring',
  when: { backend: 'native', kernel: '^6\\.18\\.' },
  status: 'FAIL',
  failure: 'expected internal_error, got shutdown',
  reason: 'PVM delivers the #GP through its own emulator and triple-faults',
}
const run = { backend: 'native', kernel: '6.18.44-fc-v657', profile: null, arch: 'x86_64' }
const failed = (message: string, more: object = {}) => ({ status: 'FAIL' as const, failure: { message, ...more } })

describe('expectations', () => {
  test('an entry applies to its test on the runs its condition names', () => {
    expect(applies(entry, run, entry.test)).toBe(true)
    expect(applies(entry, { ...run, kernel: '6.19.0' }, entry.test)).toBe(false)
    expect(applies(entry, { ...run, backend: 'emulator' }, entry.test)).toBe(false)
    expect(applies(entry, run, 'set_memory_region_test > test_zero_memory_regions')).toBe(false)
    expect(expectationFor([entry], run, entry.test)).toBe(entry)
  })

  test('kernel version ranges compare the release numerically', () => {
    expect(inVersionRange('>=6.18 <6.19', '6.18.44-fc-v657')).toBe(true)
    expect(inVersionRange('>=6.18 <6.19', '6.19.0-rc1')).toBe(false)
    expect(inVersionRange('>=6.9', '6.18.2')).toBe(true)
    expect(inVersionRange('<6.10', '6.9.12')).toBe(true)
    expect(inVersionRange('=6.18', '6.18.0')).toBe(true)
    expect(inVersionRange('>=6.18', 'emulator (upstream-6.18)')).toBe(true)
    expect(inVersionRange('>=6.18', 'no version here')).toBe(false)
    expect(applies({ ...entry, when: { kernelVersion: '>=6.18 <6.19' } }, run, entry.test)).toBe(true)
  })

  test('only a failure of the expected kind counts: same status, same errno or exit, matching message', () => {
    expect(matches(entry, failed('KVM_RUN: expected internal_error, got shutdown (rip 0x80010)'))).toBe(true)
    expect(matches(entry, failed('KVM_RUN: expected internal_error, got hlt'))).toBe(false)
    expect(matches(entry, { status: 'TIMEOUT', failure: { message: 'expected internal_error, got shutdown' } })).toBe(false)
    const errno: Expectation = { test: 't', when: {}, status: 'FAIL', errno: 'EINVAL', reason: 'r' }
    expect(matches(errno, failed('x', { errno: 'EINVAL' }))).toBe(true)
    expect(matches(errno, failed('x', { errno: 'EEXIST' }))).toBe(false)
    expect(matches(errno, failed('x'))).toBe(false)
    const warn: Expectation = { test: 't', when: {}, status: 'WARN', failure: 'mmu\\.c', reason: 'r' }
    expect(matches(warn, { status: 'WARN', kernelWarnings: ['WARNING: CPU: 0 PID: 1 at arch/x86/kvm/mmu/mmu.c:1'] })).toBe(true)
    expect(matches(warn, { status: 'WARN', kernelWarnings: ['BUG: unable to handle page fault'] })).toBe(false)
  })

  test('entries need a test, a reason, a known status and, for FAIL, how it fails', () => {
    const parse = (e: object) => () => parseExpectations(JSON.stringify({ expectations: [e] }), 'f')
    expect(parse({ test: 't', status: 'FAIL', failure: 'x' })).toThrow('f: entry 0 needs a "reason"')
    expect(parse({ test: 't', status: 'PASS', failure: 'x', reason: 'r' })).toThrow('status must be one of "FAIL", "TIMEOUT", "CRASH", "WARN"')
    expect(parse({ test: 't', status: 'FAIL', reason: 'r' })).toThrow('a FAIL entry must say how it fails')
    expect(parse({ test: 't', status: 'FAIL', erno: 'EINVAL', reason: 'r' })).toThrow('unknown field "erno"')
    expect(parse({ test: 't', status: 'FAIL', errno: 'EINVAL', reason: 'r', when: { kernelVersion: '6.18+' } })).toThrow('not a comparator')
    expect(parse({ test: 't', status: 'CRASH', reason: 'r', when: { os: 'linux' } })).toThrow('unknown condition "when.os"')
    expect(() => parseExpectations('[]', 'f')).toThrow('expected { "expectations": [...] }')
  })

  test('a backend without a file has no expectations; a file is read; KVMCONF_EXPECTATIONS replaces it', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'kvmconf-exp-'))
    expect(loadExpectations('emulator', dir, undefined)).toEqual([])
    writeFileSync(path.join(dir, 'native.json'), JSON.stringify({ expectations: [entry] }))
    expect(loadExpectations('native', dir, undefined)).toEqual([{ ...entry, source: path.join(dir, 'native.json') }])
    const other = path.join(dir, 'other.json')
    writeFileSync(other, JSON.stringify({ expectations: [{ ...entry, test: 'other' }] }))
    expect(loadExpectations('native', dir, other).map((e) => e.test)).toEqual(['other'])
  })

  test("the project's own files parse", () => {
    for (const backend of ['native']) expect(readExpectationFile(path.join(EXPECTATIONS_DIR, `${backend}.json`)).length).toBeGreaterThan(0)
  })
})

const base = { suite: 's', durationMs: 1 }
const records: TestRecord[] = [
  { ...base, id: 'a', status: 'FAIL', reason: 'x: expected EEXIST, got EINVAL from OP', failure: { message: 'x: expected EEXIST, got EINVAL from OP', errno: 'EINVAL', op: 'OP' } },
  { ...base, id: 'b', status: 'PASS' },
  { ...base, id: 'c', status: 'SKIP', reason: 'no cap' },
  { ...base, id: 'd', status: 'TIMEOUT', reason: 'Test timed out in 5ms.', failure: { message: 'Test timed out in 5ms.' } },
  { ...base, id: 'e', status: 'WARN', reason: 'w', kernelLog: { lines: [], warnings: ['WARNING: at mmu.c'], taintBefore: 0, taintAfter: 512 } },
]
const e = (test: string, more: Partial<Expectation>): Expectation => ({ test, when: { backend: 'emulator' }, status: 'FAIL', reason: `why ${test}`, ...more })
const emu = { backend: 'emulator', kernel: 'emulator (upstream-6.18)', profile: 'upstream-6.18', arch: 'x86_64' }

describe('judging a run', () => {
  test('met entries give XFAIL, missed ones keep the failure and say so, stale ones give XPASS', () => {
    const judged = judgeRecords(records, [e('a', { errno: 'EINVAL' }), e('b', { errno: 'EINVAL' }), e('c', { errno: 'EINVAL' }), e('d', { status: 'TIMEOUT' }), e('e', { status: 'WARN' })], emu, { kmsg: true })
    expect(judged.map((r) => r.status)).toEqual(['XFAIL', 'XPASS', 'SKIP', 'XFAIL', 'XFAIL'])
    const missed = judgeRecords(records, [e('a', { errno: 'EBUSY' })], emu)
    expect(missed[0]).toMatchObject({ status: 'FAIL', reason: expect.stringContaining('fails differently: expected FAIL with errno EBUSY, got FAIL with errno EINVAL') })
  })

  test('a WARN entry is only judged stale when the kernel log was read', () => {
    expect(judgeRecords(records, [e('b', { status: 'WARN' })], emu)[1]?.status).toBe('PASS')
    expect(judgeRecords(records, [e('b', { status: 'WARN' })], emu, { kmsg: true })[1]?.status).toBe('XPASS')
  })

  test('--strict-kernel-log fails a test that made the kernel warn', () => {
    expect(strictKernelLog(records)[4]).toMatchObject({ status: 'FAIL', reason: 'the kernel warned during the test: WARNING: at mmu.c' })
  })

  test('update writes the entries the run needs, and the run then judges as expected', () => {
    const result: RunResult = {
      runInfo: { ...emu, host: 'h', kvmconfVersion: '0', gitRevision: null, startedAt: '' },
      results: judgeRecords(records, [e('b', { errno: 'EINVAL' })], emu),
    }
    const u = updateExpectations(result, [e('b', { errno: 'EINVAL' })], { reason: 'planted' })
    expect(u.removed.map((x) => x.test)).toEqual(['b'])
    expect(u.added).toEqual([
      { test: 'a', when: { backend: 'emulator', profile: 'upstream-6.18', arch: 'x86_64' }, status: 'FAIL', errno: 'EINVAL', reason: 'planted' },
      { test: 'd', when: { backend: 'emulator', profile: 'upstream-6.18', arch: 'x86_64' }, status: 'TIMEOUT', reason: 'planted' },
    ])
    const reread = parseExpectations(renderExpectations(u.entries), 'updated.json')
    const again = judgeRecords(records, reread, emu)
    expect(again.map((r) => r.status)).toEqual(['XFAIL', 'PASS', 'SKIP', 'XFAIL', 'WARN'])
  })

  test('a real kernel is pinned by its major.minor', () => {
    const info = { ...run, host: 'h', kvmconfVersion: '0', gitRevision: null, startedAt: '' }
    expect(conditionFor(info)).toEqual({ backend: 'native', kernelVersion: '>=6.18 <6.19', arch: 'x86_64' })
  })
})
