// `kvmconf report --html`: the page is opened in headless Chromium (Debian's `chromium`, which .ci/run
// installs) and what the browser shows is checked: the verdict, a failure with its details, the
// counts the page's script computes, and the plot.

import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { expect, test } from 'vitest'
import type { BenchResult } from '../bench/result.ts'
import type { RunResult } from '../results.ts'
import { kvmconf } from './spawn-kvmconf.ts'

const CHROMIUM = '/usr/bin/chromium'

const runInfo = { backend: 'native', profile: null, kernel: '6.18.44-fc-v657', arch: 'x86_64', host: 'vm', kvmconfVersion: '0.1.0', gitRevision: 'abc', startedAt: '2026-01-01T00:00:00.000Z' }
const result: RunResult = {
  runInfo,
  results: [
    { id: 'set_memory_region_test > test_add_max_memory_regions', suite: 'set_memory_region', status: 'PASS', durationMs: 812 },
    {
      id: 'set_memory_region_test > test_add_overlapping_private_memory_regions', suite: 'set_memory_region', status: 'FAIL', durationMs: 3,
      reason: 'slot 10 overlapping the front half of slot 11: expected EEXIST, got EINVAL from KVM_SET_USER_MEMORY_REGION2',
      failure: { message: 'slot 10 overlapping the front half of slot 11: expected EEXIST, got EINVAL from KVM_SET_USER_MEMORY_REGION2', op: 'KVM_SET_USER_MEMORY_REGION2', expected: 'EEXIST', errno: 'EINVAL' },
    },
    { id: 'guest_memfd_test > KVM_X86_SW_PROTECTED_VM > test_guest_memfd_flags', suite: 'guest_memfd', status: 'SKIP', reason: 'KVM_CAP_VM_TYPES = 0x1 lacks KVM_X86_SW_PROTECTED_VM', durationMs: 0 },
    { id: 'a test named </script><b>bold</b>', suite: 'guest_memfd', status: 'PASS', durationMs: 1 },
  ],
}
const bench: BenchResult = {
  kind: 'kvmconf-bench', version: 1, runInfo, clock: 'wall', repeat: 3,
  metrics: [1, 64, 512].map((slots) => ({
    benchmark: 'memslot_churn', metric: 'memslot create+delete rate', unit: 'pairs/s', higherIsBetter: true, x: 'slots', params: { slots }, samples: [1000 / slots, 1100 / slots, 900 / slots],
  })),
}

test('the HTML report shows the verdict, the failure with its details, and the plots in Chromium', ({ skip }) => {
  if (!existsSync(CHROMIUM)) return skip(`${CHROMIUM} is not installed (.ci/run installs Debian's chromium)`)
  const dir = mkdtempSync(path.join(tmpdir(), 'kvmconf-report-spec-'))
  writeFileSync(`${dir}/r.json`, JSON.stringify(result))
  writeFileSync(`${dir}/bench.json`, JSON.stringify(bench))
  const r = kvmconf(['report', `${dir}/r.json`, '--bench', `${dir}/bench.json`, '--html', `${dir}/out.html`])
  expect(r.status, r.stderr).toBe(0)

  const chrome = spawnSync(
    CHROMIUM,
    [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', `--user-data-dir=${mkdtempSync(path.join(dir, 'profile-'))}`,
      '--dump-dom', pathToFileURL(`${dir}/out.html`).href,
    ],
    { encoding: 'utf8', timeout: 120_000 },
  )
  expect(chrome.status, chrome.stderr).toBe(0)
  const dom = chrome.stdout
  // The script ran: it marked the page and counted the statuses from the embedded result.
  expect(dom).toMatch(/<html lang="en" data-rendered="yes">/)
  expect(dom).toContain('<span id="js-summary">FAIL: 1, PASS: 2, SKIP: 1</span>')
  expect(dom).toMatch(/class="verdict bad" id="verdict">NOT as expected \(exit 1\): 2 passed, 1 failed, 1 skipped/)
  expect(dom).toContain('op KVM_SET_USER_MEMORY_REGION2, expected EEXIST, got errno EINVAL')
  expect(dom).toContain('KVM_CAP_VM_TYPES = 0x1 lacks KVM_X86_SW_PROTECTED_VM')
  expect(dom).toContain('a test named &lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;')
  expect(dom).toMatch(/<figure id="plot-memslot_churn-memslot_create_delete_rate"><svg[^>]*>/)
  expect(dom.match(/<circle class="sample"/g)).toHaveLength(9)
}, 180_000)
