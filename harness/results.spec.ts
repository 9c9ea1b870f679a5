import { expect, test } from 'vitest'
import { exitCodeFor, type RunResult, type TestRecord } from './results.ts'

const runInfo = { backend: 'emulator', profile: null, kernel: 'k', arch: 'x86_64', host: 'h', kvmconfVersion: '0', gitRevision: null, startedAt: '' }
const run = (...results: TestRecord[]): RunResult => ({ runInfo, results })
const base = { id: 't', suite: 's', durationMs: 0 }
const pass: TestRecord = { ...base, status: 'PASS' }
const skip: TestRecord = { ...base, status: 'SKIP', reason: 'no cap' }
const xfail: TestRecord = { ...base, status: 'XFAIL', reason: 'r', failure: { message: 'm' }, expectation: { status: 'FAIL', reason: 'r' } }
const warn: TestRecord = { ...base, status: 'WARN', reason: 'w', kernelLog: { lines: [], warnings: ['WARNING:'], taintBefore: 0, taintAfter: 512 } }

test('exit codes: 0 as expected, 1 not as expected, 4 when every test skipped', () => {
  expect(exitCodeFor(run(pass, skip, xfail, warn))).toBe(0)
  expect(exitCodeFor(run(skip, skip))).toBe(4)
  expect(exitCodeFor(run(skip, xfail))).toBe(0)
  for (const status of ['FAIL', 'TIMEOUT', 'CRASH'] as const) {
    expect(exitCodeFor(run(pass, { ...base, status, reason: 'x', failure: { message: 'x' } }))).toBe(1)
  }
  expect(exitCodeFor(run(pass, { ...base, status: 'XPASS', reason: 'x', expectation: { status: 'FAIL', reason: 'r' } }))).toBe(1)
  expect(exitCodeFor({ ...run(pass), errors: ['a worker died'] })).toBe(1)
})
