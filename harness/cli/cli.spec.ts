// The CLI's contract with a shell: --help everywhere, and a one-line error with exit code 2 for bad
// usage. Spawns the real `kvmconf` bin, as a user or CI would.

import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, test } from 'vitest'

const bin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), 'kvmconf.mjs')

function kvmconf(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

describe('kvmconf command line', () => {
  test('--help lists the commands and exits 0', () => {
    const r = kvmconf('--help')
    expect(r.status).toBe(0)
    expect(r.stdout).toMatch(/Commands:\n\s+run\s/)
  })

  test.each([['run'], ['caps']])('%s --help exits 0 and describes its options', (verb) => {
    const r = kvmconf(verb, '--help')
    expect(r.status).toBe(0)
    expect(r.stdout).toContain(`Usage: kvmconf ${verb}`)
    expect(r.stdout).toContain('--backend')
  })

  test.each([
    [['frobnicate'], /unknown command 'frobnicate'/],
    [['run', '--bogus'], /kvmconf run: Unknown option '--bogus'/],
    [['run', '--backend', 'qemu'], /--backend qemu: expected one of emulator, native, remote/],
    [['run', '--suite', 'nope'], /--suite nope: no such suite \(suites: .*guest_memfd.*\)/],
    [['run', '--reporter', 'json'], /--reporter json needs --output FILE/],
    [['run', '--reporter', 'tap'], /--reporter tap: expected one of console, json/],
    [['caps', '--backend'], /kvmconf caps: Option '--backend <value>' argument missing/],
  ])('%j is a usage error: one line, exit 2', (args, message) => {
    const r = kvmconf(...args)
    expect(r.status).toBe(2)
    expect(r.stderr).toMatch(message)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
  })
})
