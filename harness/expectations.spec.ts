import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { describe, expect, test } from 'vitest'
import { applies, expectationFor, failsAsExpected, loadExpectations, parseExpectations, type Expectation } from './expectations.ts'

const entry: Expectation = {
  test: 'set_memory_region_test > test_mmio_during_vectoring',
  when: { backend: 'native', kernel: '^6\\.18\\.' },
  status: 'FAIL',
  failure: 'expected internal_error, got shutdown',
  reason: 'PVM delivers the #GP through its own emulator and triple-faults',
}
const run = { backend: 'native', kernel: '6.18.44-fc-v657', profile: null, arch: 'x86_64' }

describe('expectations', () => {
  test('an entry applies to its test on the runs its condition names', () => {
    expect(applies(entry, run, entry.test)).toBe(true)
    expect(applies(entry, { ...run, kernel: '6.19.0' }, entry.test)).toBe(false)
    expect(applies(entry, { ...run, backend: 'emulator' }, entry.test)).toBe(false)
    expect(applies(entry, run, 'set_memory_region_test > test_zero_memory_regions')).toBe(false)
    expect(expectationFor([entry], run, entry.test)).toBe(entry)
  })

  test('only a failure of the expected kind counts', () => {
    expect(failsAsExpected(entry, 'KVM_RUN: expected internal_error, got shutdown (rip 0x80010)')).toBe(true)
    expect(failsAsExpected(entry, 'KVM_RUN: expected internal_error, got hlt')).toBe(false)
  })

  test('entries need a test, a failure pattern and a reason', () => {
    expect(() => parseExpectations('{"expectations":[{"test":"t","status":"FAIL","failure":"x"}]}', 'f')).toThrow(
      'f: entry 0 needs a "reason"',
    )
    expect(() => parseExpectations('{"expectations":[{"test":"t","status":"PASS","failure":"x","reason":"r"}]}', 'f')).toThrow(
      'status must be "FAIL"',
    )
    expect(() => parseExpectations('[]', 'f')).toThrow('expected { "expectations": [...] }')
  })

  test('a backend without a file has no expectations; a file is read', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'kvmconf-exp-'))
    expect(loadExpectations('emulator', dir)).toEqual([])
    writeFileSync(path.join(dir, 'native.json'), JSON.stringify({ expectations: [entry] }))
    expect(loadExpectations('native', dir)).toEqual([entry])
  })
})
