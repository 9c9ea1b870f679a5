// Reporters are tested the way vitest tests its own: run a fixture suite (fixtures/*.fixture.ts,
// through the same setup file, journal and collect reporter as `kvmconf run`), judge it against a few
// expectation entries, render it with every reporter and compare with the snapshots beside this file.

import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { beforeAll, describe, expect, test } from 'vitest'
import { judgeRecords, parseExpectations } from '../expectations.ts'
import { exitCodeFor, type RunResult, type TestRecord } from '../results.ts'
import { renderConsole } from './console.ts'
import { renderJson } from './json.ts'
import { renderJunit } from './junit.ts'
import { renderKtap } from './ktap.ts'
import { parseKtap } from './ktap-parser.ts'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.resolve(here, '../..')

const runInfo: RunResult['runInfo'] = {
  backend: 'emulator',
  profile: 'upstream-6.18',
  kernel: 'emulator (upstream-6.18)',
  arch: 'x86_64',
  host: 'fixture-host',
  kvmconfVersion: '0.1.0',
  gitRevision: '0123456789abcdef0123456789abcdef01234567',
  startedAt: '2026-01-01T00:00:00.000Z',
  expectations: ['fixtures/expectations/emulator.json'],
}

// The run-level judgement the fixture is put through: one entry met, one missed, one that goes stale.
const entries = parseExpectations(
  JSON.stringify({
    expectations: [
      { test: 'outcomes > fails as an entry expects', when: { backend: 'emulator' }, status: 'FAIL', exit: 'mmio', reason: 'the guest reads MMIO here' },
      { test: 'outcomes > fails with the wrong errno', when: { profile: 'upstream-6.18' }, status: 'FAIL', errno: 'EBUSY', reason: 'recorded with another errno' },
      { test: 'outcomes > passes where an entry expects a failure', when: {}, status: 'FAIL', failure: 'anything', reason: 'fixed upstream since' },
    ],
  }),
  'fixtures/expectations/emulator.json',
)

let result: RunResult

beforeAll(() => {
  const tsx = path.join(root, 'node_modules/.bin/tsx')
  const r = spawnSync(tsx, [path.join(here, 'fixtures/run-fixtures.ts')], { cwd: root, encoding: 'utf8', timeout: 120_000 })
  if (r.status !== 0) throw new Error(`run-fixtures failed (${r.status}): ${r.stderr}`)
  const { records, errors } = JSON.parse(r.stdout) as { records: TestRecord[]; errors: string[] }
  // Durations vary from run to run, and files finish in either order.
  const stable = records.map((rec) => ({ ...rec, durationMs: 0 })).sort((a, b) => a.suite.localeCompare(b.suite))
  result = { runInfo, results: judgeRecords(stable, entries, { ...runInfo }), errors }
}, 180_000)

describe('reporters on the fixture suite', () => {
  test('every kind of outcome is read from vitest', () => {
    const statuses = Object.fromEntries(result.results.map((r) => [r.id, r.status]))
    expect(statuses).toEqual({
      'runs before the crash': 'PASS',
      'kills its worker': 'CRASH',
      'never runs': 'CRASH',
      'outcomes > passes': 'PASS',
      'outcomes > fails with the wrong errno': 'FAIL',
      'outcomes > fails where an error was expected': 'FAIL',
      'outcomes > rejects with a KvmError': 'FAIL',
      'outcomes > sees the wrong vCPU exit': 'FAIL',
      'outcomes > skips # with a reason': 'SKIP',
      'outcomes > times out': 'TIMEOUT',
      'outcomes > fails a property': 'FAIL',
      'outcomes > passes while the kernel warns': 'WARN',
      'outcomes > fails as an entry expects': 'XFAIL',
      'outcomes > passes where an entry expects a failure': 'XPASS',
    })
    const property = result.results.find((r) => r.id === 'outcomes > fails a property')
    expect(property).toMatchObject({ failure: { seed: 42 } })
    expect(exitCodeFor(result)).toBe(1)
  })

  test('console', async () => {
    await expect(renderConsole(result)).toMatchFileSnapshot('__snapshots__/outcomes.console.txt')
  })

  test('KTAP', async () => {
    const ktap = renderKtap(result)
    await expect(ktap).toMatchFileSnapshot('__snapshots__/outcomes.ktap')
    const doc = parseKtap(ktap)
    const outcomes = doc.tests.find((t) => t.description === 'outcomes')
    expect(outcomes?.ok).toBe(false)
    const skip = outcomes?.subtests.find((t) => t.directive === 'SKIP')
    expect(skip).toMatchObject({ description: 'outcomes > skips # with a reason', data: 'KVM_CAP_VM_TYPES = 0x1 lacks KVM_X86_SW_PROTECTED_VM' })
    expect(outcomes?.subtests.find((t) => t.directive === 'TIMEOUT')?.ok).toBe(false)
    expect(outcomes?.subtests.find((t) => t.description === 'outcomes > fails as an entry expects')?.directive).toBe('XFAIL')
    expect(doc.tests.find((t) => t.description === 'crash')?.subtests[1]).toMatchObject({ ok: false, directive: 'ERROR' })
    expect(doc.trailer.at(-1)).toBe('Totals: pass:3 fail:5 xfail:1 xpass:1 skip:1 error:3')
  })

  test('JUnit', async () => {
    const xml = renderJunit(result)
    await expect(xml).toMatchFileSnapshot('__snapshots__/outcomes.junit.xml')
    // Well-formed enough for a CI parser: every element closed in order, no raw & or <.
    const stack: string[] = []
    for (const m of xml.matchAll(/<(\/?)([a-z-]+)[^>]*?(\/?)>/g)) {
      if (m[1] === '/') expect(stack.pop()).toBe(m[2])
      else if (m[3] !== '/') stack.push(m[2] as string)
    }
    expect(stack).toEqual([])
    expect(xml.replace(/<[^>]*>/g, '')).not.toMatch(/&(?!(amp|lt|gt|quot|apos);)|</)
  })

  test('an error outside any test is a failing entry of its own', () => {
    const withError: RunResult = { ...result, errors: ['Error: a setup file threw\nat line 2'] }
    const doc = parseKtap(renderKtap(withError))
    expect(doc.tests.at(-1)).toMatchObject({ description: '(run errors)', ok: false, directive: 'ERROR', data: 'Error: a setup file threw\nat line 2' })
    expect(renderJunit(withError)).toContain('<error type="RUN" message="Error: a setup file threw&#10;at line 2"')
    expect(renderConsole(withError)).toContain('Run error: Error: a setup file threw')
  })

  test('JSON', async () => {
    await expect(renderJson(result)).toMatchFileSnapshot('__snapshots__/outcomes.json')
  })
})
