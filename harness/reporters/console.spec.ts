import { describe, expect, test } from 'vitest'
import { renderConsole } from './console.ts'
import type { RunResult } from '../results.ts'

const result: RunResult = {
  runInfo: {
    backend: 'emulator',
    profile: 'upstream-6.18',
    kernel: 'emulator (upstream-6.18)',
    arch: 'x86_64',
    host: 'h',
    kvmconfVersion: '0.1.0',
    startedAt: '2026-01-01T00:00:00.000Z',
  },
  results: [
    { id: 'a > t1', suite: 'set_memory_region', status: 'PASS', durationMs: 1 },
    { id: 'a > t2', suite: 'set_memory_region', status: 'SKIP', reason: 'KVM_CAP_X = 0', durationMs: 0 },
    { id: 'b > t3', suite: 'guest_memfd', status: 'FAIL', reason: 'expected EINVAL, got EEXIST', durationMs: 2 },
  ],
}

describe('console reporter', () => {
  test('prints per-suite counts, every skip reason and every failure', () => {
    const text = renderConsole(result)
    expect(text).toContain('set_memory_region       1       0        1')
    expect(text).toContain('guest_memfd             0       1        0')
    expect(text).toContain('set_memory_region: KVM_CAP_X = 0')
    expect(text).toContain('    - a > t2')
    expect(text).toContain('guest_memfd > b > t3')
    expect(text).toContain('expected EINVAL, got EEXIST')
    expect(text.trimEnd().endsWith('1 passed, 1 failed, 1 skipped')).toBe(true)
  })
})
