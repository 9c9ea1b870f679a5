// The install never fails on a machine that cannot build the addon: build.mjs records why and exits
// 0, and loadNative() reports the backend unavailable with that text. Run in a scratch build directory
// (KVMCONF_NATIVE_BUILD_DIR) with CXX=false, so the real build is left alone.

import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import { afterAll, describe, expect, test } from 'vitest'

import { loadNative } from './load.ts'

const here = path.dirname(fileURLToPath(import.meta.url))
const scratch = mkdtempSync(path.join(os.tmpdir(), 'kvmconf-build-'))

afterAll(() => rmSync(scratch, { recursive: true, force: true }))

describe('build.mjs', () => {
  test('a failing compiler: exit 0, build-error.txt with the command and the compiler output, no addon', async () => {
    const r = spawnSync(process.execPath, [path.join(here, 'build.mjs')], {
      env: { ...process.env, CXX: 'false', KVMCONF_NATIVE_BUILD_DIR: scratch },
      encoding: 'utf8',
      timeout: 60_000,
    })
    expect(r.status, r.stderr).toBe(0)
    const text = readFileSync(path.join(scratch, 'build-error.txt'), 'utf8')
    expect(text).toMatch(/^native addon build failed\ncommand: node .*node-gyp\.js configure build --nodedir=\S+ --jobs=max/)
    expect(text).toContain('make: *** ')
    expect(existsSync(path.join(scratch, 'kvmconf_native.node'))).toBe(false)

    const load = await loadNative({ buildDir: scratch })
    expect(load).toEqual({ available: false, reason: text.trim() })
  }, 60_000)

  test('no build at all: unavailable, saying what is missing', async () => {
    const empty = path.join(scratch, 'empty')
    const load = await loadNative({ buildDir: empty })
    expect(load.available).toBe(false)
    expect(!load.available && load.reason).toContain('native addon not built')
  })
})
