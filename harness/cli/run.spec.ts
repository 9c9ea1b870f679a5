// `kvmconf run` end to end: exit codes against an emulator with a deliberate bug and the expectations
// that record it, KTAP on this machine's /dev/kvm with the kernel log checked, shards and merge.

import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { describe, expect, test } from 'vitest'
import { parseKtap, type KtapNode } from '../reporters/ktap-parser.ts'
import { parseRunResult } from '../results.ts'
import { kvmconf } from './spawn-kvmconf.ts'

const tmp = () => mkdtempSync(path.join(tmpdir(), 'kvmconf-run-spec-'))
const statuses = (file: string) => parseRunResult(readFileSync(file, 'utf8'), file).results.map((r) => `${r.id}: ${r.status}`)

describe('kvmconf run', () => {
  test('a deliberate emulator bug fails the run; expectations that record it pass it, unless they record another errno', () => {
    const dir = tmp()
    const run = (...more: string[]) =>
      // The profile is pinned so the recorded expectation does not depend on the emulator's default.
      kvmconf(['run', '--profile', 'upstream-6.18', '--suite', 'set_memory_region', '--test', 'overlapping', '--reporter', 'console', ...more], { timeoutMs: 180_000 })
    const bug = ['--emulator-bug', 'overlap-einval']

    const broken = run(...bug, '--reporter', `json=${dir}/broken.json`)
    expect(broken.stdout).toContain('expected EEXIST, got EINVAL from KVM_SET_USER_MEMORY_REGION2')
    expect(broken.status).toBe(1)

    const update = kvmconf(['expectations', 'update', `${dir}/broken.json`, '--reason', 'planted bug', '--output', `${dir}/exp.json`])
    expect(update.status).toBe(0)
    const entries = JSON.parse(readFileSync(`${dir}/exp.json`, 'utf8')) as { expectations: object[] }
    expect(entries.expectations).toEqual([
      {
        test: 'set_memory_region_test > test_add_overlapping_private_memory_regions',
        when: { backend: 'emulator', profile: 'upstream-6.18', arch: 'x86_64' },
        status: 'FAIL',
        errno: 'EINVAL',
        reason: 'planted bug',
      },
    ])

    const recorded = run(...bug, '--expectations', `${dir}/exp.json`, '--reporter', `json=${dir}/recorded.json`)
    expect(recorded.status).toBe(0)
    expect(statuses(`${dir}/recorded.json`)).toContain('set_memory_region_test > test_add_overlapping_private_memory_regions: XFAIL')

    writeFileSync(`${dir}/other.json`, readFileSync(`${dir}/exp.json`, 'utf8').replace('"EINVAL"', '"EBUSY"'))
    const other = run(...bug, '--expectations', `${dir}/other.json`)
    expect(other.stdout).toContain('fails differently: expected FAIL with errno EBUSY, got FAIL with errno EINVAL')
    expect(other.status).toBe(1)

    // Without the bug the entry is stale: an unexpected pass fails the run too.
    const fixed = run('--expectations', `${dir}/exp.json`)
    expect(fixed.stdout).toContain('XPASS')
    expect(fixed.status).toBe(1)
  }, 600_000)

  test('on this machine, --kmsg --reporter ktap prints valid KTAP with every skip\'s reason', async ({ skip }) => {
    const { loadBackend } = await import('../../backends/index.ts')
    const load = await loadBackend('native')
    if (!load.available) return skip(`the native backend is not available: ${load.reason}`)
    await load.backend.close()
    const dir = tmp()
    const r = kvmconf(['run', '--backend', 'native', '--kmsg', '--reporter', 'ktap', '--reporter', `json=${dir}/native.json`], { timeoutMs: 540_000 })
    expect([0, 1], r.stderr).toContain(r.status)
    const doc = parseKtap(r.stdout)
    const tests: KtapNode[] = doc.tests.flatMap((s) => s.subtests)
    const result = parseRunResult(readFileSync(`${dir}/native.json`, 'utf8'), 'native.json')
    expect(tests).toHaveLength(result.results.length)
    expect(result.runInfo.kmsg).toBe(true)
    const skips = tests.filter((t) => t.directive === 'SKIP')
    expect(skips.length).toBeGreaterThan(0)
    for (const s of skips) expect(s.data, s.description).toMatch(/\S/)
    expect(doc.trailer.at(-1)).toMatch(/^Totals: pass:\d+ fail:\d+ xfail:\d+ xpass:\d+ skip:\d+ error:\d+$/)
  }, 600_000)

  test('shards of a run merge into one result', () => {
    const dir = tmp()
    const args = ['run', '--suite', 'guest_memfd', '--suite', 'set_memory_region', '--test', 'test_invalid_memory_region_flags|test_guest_memfd_flags']
    const one = kvmconf([...args, '--shard', '1/2', '--reporter', `json=${dir}/1.json`])
    const two = kvmconf([...args, '--shard', '2/2', '--reporter', `json=${dir}/2.json`])
    expect([one.status, two.status]).toEqual([0, 0])
    const suites = (f: string) => [...new Set(parseRunResult(readFileSync(f, 'utf8'), f).results.map((r) => r.suite))]
    expect([...suites(`${dir}/1.json`), ...suites(`${dir}/2.json`)].sort()).toEqual(['guest_memfd', 'set_memory_region'])
    const merged = kvmconf(['merge', `${dir}/1.json`, `${dir}/2.json`, '--output', `${dir}/all.json`])
    expect(merged.status).toBe(0)
    const all = parseRunResult(readFileSync(`${dir}/all.json`, 'utf8'), 'all.json')
    expect(all.runInfo.shard).toBeUndefined()
    expect(all.results.length).toBe(statuses(`${dir}/1.json`).length + statuses(`${dir}/2.json`).length)
    // A shard merged with itself is a configuration error.
    const twice = kvmconf(['merge', `${dir}/1.json`, `${dir}/1.json`])
    expect(twice.status).toBe(2)
    expect(twice.stderr).toMatch(/is in both/)
  }, 300_000)
})
