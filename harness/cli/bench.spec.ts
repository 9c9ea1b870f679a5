// `kvmconf bench` and `kvmconf compare` end to end on the emulator: two runs of the same build are not
// a regression; a run with a planted 30% slowdown is.

import { existsSync, mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { expect, test } from 'vitest'
import { parseBenchResult } from '../bench/result.ts'
import { kvmconf } from './spawn-kvmconf.ts'

test('compare flags a planted 30% slowdown and not two runs of the same build', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'kvmconf-bench-spec-'))
  // CPU time: the self-tests share two cores with other test files, and elapsed time would measure them.
  const bench = (name: string, ...more: string[]) =>
    kvmconf(['bench', '--bench', 'memslot_churn', '--backend', 'emulator', '--repeat', '12', '--clock', 'cpu', '--output', `${dir}/${name}.json`, ...more], { timeoutMs: 240_000 })

  const base = bench('base')
  expect(base.status, base.stderr).toBe(0)
  const result = parseBenchResult(readFileSync(`${dir}/base.json`, 'utf8'), 'base.json')
  expect(result.metrics.map((m) => m.params.slots)).toEqual([1, 64, 512, 2048])
  for (const m of result.metrics) expect(m.samples).toHaveLength(12)
  const svg = readFileSync(`${dir}/base.memslot_churn-memslot_create_delete_rate.svg`, 'utf8')
  expect(svg).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/)
  expect(svg.match(/<circle class="sample"/g)).toHaveLength(48)
  expect(svg).toContain('<polyline class="median"')

  // The same build again is no regression. Other test files share the two cores, and a burst of theirs
  // can slow one run's samples past the threshold (CPU time too: caches, frequency), so a verdict of
  // regression is re-measured, twice at most; a compare that always cries regression still fails.
  let same = { stdout: '', status: -1 as number | null }
  for (let attempt = 0; attempt < 3 && same.status !== 0; attempt++) {
    expect(bench('same').status).toBe(0)
    same = kvmconf(['compare', `${dir}/base.json`, `${dir}/same.json`])
  }
  expect(same.stdout).toContain('No performance regression.')
  expect(same.status).toBe(0)

  expect(bench('slow', '--plant-slowdown', '30').status).toBe(0)
  const slow = kvmconf(['compare', `${dir}/base.json`, `${dir}/slow.json`])
  expect(slow.stdout).toMatch(/memslot_churn memslot create\+delete rate \[slots=\d+\] .* -[23]\d\.\d% .* regression/)
  expect(slow.status).toBe(1)
  expect(existsSync(`${dir}/slow.memslot_churn-memslot_create_delete_rate.svg`)).toBe(true)
}, 600_000)
