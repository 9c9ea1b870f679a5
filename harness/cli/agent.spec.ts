// `kvmconf agent`'s refusals: it never starts without a token, nor on a non-loopback address without
// TLS unless told --insecure; every refusal is one line and exit code 2. Spawns the real bin.

import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import { afterAll, describe, expect, test } from 'vitest'

import { isLoopback, parseListen, parseSize } from './agent.ts'

const bin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), 'kvmconf.mjs')
const dir = mkdtempSync(path.join(os.tmpdir(), 'kvmconf-agent-cli-'))
const token = path.join(dir, 'token')
const empty = path.join(dir, 'empty')
writeFileSync(token, 'secret\n', { mode: 0o600 })
writeFileSync(empty, '  \n', { mode: 0o600 })
afterAll(() => rmSync(dir, { recursive: true, force: true }))

function agent(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, 'agent', ...args], { encoding: 'utf8', timeout: 60_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

describe('kvmconf agent', () => {
  test('--help describes the options and exits 0', () => {
    const r = agent('--help')
    expect(r.status).toBe(0)
    expect(r.stdout).toContain('Usage: kvmconf agent')
    for (const option of ['--listen', '--backend', '--token-file', '--tls-cert', '--insecure', '--idle-timeout', '--max-vms']) {
      expect(r.stdout).toContain(option)
    }
  })

  test.each([
    [[], /--token-file is required/],
    [['--token-file', empty], /--token-file .*empty: the file is empty/],
    [['--token-file', path.join(dir, 'missing')], /--token-file .*missing: ENOENT/],
    [['--token-file', token, '--listen', '10.1.2.3:7420'], /--listen 10\.1\.2\.3:7420 is not a loopback address: give --tls-cert and --tls-key, or --insecure/],
    [['--token-file', token, '--listen', '0.0.0.0:0'], /is not a loopback address/],
    [['--token-file', token, '--listen', 'localhost'], /--listen localhost: expected HOST:PORT/],
    [['--token-file', token, '--backend', 'remote'], /--backend remote: expected one of native, emulator/],
    [['--token-file', token, '--profile', 'pvm-6.18'], /--profile applies to the emulator backend only/],
    [['--token-file', token, '--tls-cert', token], /--tls-cert and --tls-key go together/],
    [['--token-file', token, '--max-vms', '0'], /--max-vms 0: expected a positive integer/],
    [['--token-file', token, '--max-memory', '12Q'], /--max-memory 12Q: expected a byte count/],
  ])('%j is refused: one line, exit 2', (args, message) => {
    const r = agent(...args)
    expect(r.status).toBe(2)
    expect(r.stderr).toMatch(message)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    expect(r.stdout).toBe('')
  })

  test('address and size parsing', () => {
    expect(parseListen('127.0.0.1:0')).toEqual({ host: '127.0.0.1', port: 0 })
    expect(parseListen('[::1]:7420')).toEqual({ host: '::1', port: 7420 })
    expect(() => parseListen('127.0.0.1:65536')).toThrow(/expected HOST:PORT/)
    expect(['localhost', '127.0.0.1', '127.9.9.9', '::1', '::ffff:127.0.0.1'].map(isLoopback)).toEqual([true, true, true, true, true])
    expect(['0.0.0.0', '10.200.0.1', '::', 'example.org', '128.0.0.1'].map(isLoopback)).toEqual([false, false, false, false, false])
    expect(parseSize('max-memory', '256G')).toBe(256n << 30n)
    expect(parseSize('max-memory', '4096')).toBe(4096n)
  })
})
