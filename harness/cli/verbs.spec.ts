// Every verb of this change has --help and turns bad usage into one line and exit code 2.

import { describe, expect, test } from 'vitest'
import { kvmconf } from './spawn-kvmconf.ts'

describe('the verbs', () => {
  test.each(['run', 'merge', 'compare', 'expectations', 'report', 'bench'])('%s --help exits 0, and an unknown option is one line and exit 2', (verb) => {
    const help = kvmconf([verb, '--help'])
    expect(help.status).toBe(0)
    expect(help.stdout).toContain(`Usage: kvmconf ${verb}`)
    expect(help.stdout).toMatch(/Exit codes:/)
    const bad = kvmconf([verb, '--bogus'])
    expect(bad.status).toBe(2)
    expect(bad.stderr.trim().split('\n')).toHaveLength(1)
  })

  test.each([
    [['run', '--kmsg'], /--kmsg reads the kernel log of the machine under test: the native backend's, or the remote agent's/],
    [['run', '--strict-kernel-log'], /--strict-kernel-log needs --kmsg/],
    [['run', '--reporter', 'console', '--reporter', 'ktap'], /only one reporter can write to stdout/],
    [['run', '--reporter', 'junit='], /the file name is empty/],
    [['run', '--shard', '3/2'], /--shard 3\/2: expected I\/N/],
    [['run', '--shard', '99/99'], /--shard <count> must be a smaller than count of test files/],
    [['run', '--emulator-bug', 'nope'], /--emulator-bug nope: expected one of overlap-einval/],
    [['run', '--expectations', '/nonexistent.json'], /--expectations: ENOENT/],
    [['run', '--test', '('], /--test \(: Invalid regular expression/],
    [['compare', 'a.json'], /expected two files/],
    [['merge'], /name the JSON results to merge/],
    [['expectations'], /expected a subcommand: update or check/],
    [['expectations', 'update', '/nonexistent.json'], /\/nonexistent.json: ENOENT/],
    [['fuzz', '--replay', '/nonexistent.json'], /\/nonexistent.json: ENOENT/],
    [['fuzz', '--replay', 'package-lock.json'], /--replay package-lock.json: not a kvmconf fuzz replay file/],
    [['report', 'r.json'], /--html FILE is required/],
    [['bench', '--repeat', '1'], /--repeat 1: expected an integer of at least 2/],
    [['bench', '--output', 'x.txt'], /must end in .json/],
  ])('%j is a usage error: one line, exit 2', (args, message) => {
    const r = kvmconf(args)
    expect(r.status).toBe(2)
    expect(r.stderr).toMatch(message)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
  })
})

describe('the example CI workflows (fixtures/ci)', () => {
  test('name only verbs and options kvmconf has', async () => {
    const { readFileSync, readdirSync } = await import('node:fs')
    const path = await import('node:path')
    const dir = path.resolve(import.meta.dirname, '../../fixtures/ci')
    const helps = new Map<string, string>()
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.yml'))) {
      const text = readFileSync(path.join(dir, file), 'utf8').replace(/\\\n\s*/g, ' ')
      for (const m of text.matchAll(/npx kvmconf ([a-z-]+)([^\n'|&]*)/g)) {
        const verb = m[1] as string
        if (!helps.has(verb)) helps.set(verb, kvmconf([verb, '--help']).stdout)
        const help = helps.get(verb) as string
        expect(help, `${file}: kvmconf ${verb}`).toContain(`Usage: kvmconf ${verb}`)
        for (const opt of (m[2] ?? '').match(/--[a-z][a-z-]*/g) ?? []) expect(help, `${file}: kvmconf ${verb} ${opt}`).toContain(opt)
      }
    }
    expect([...helps.keys()].sort()).toEqual(['agent', 'bench', 'compare', 'expectations', 'report', 'run'])
  }, 120_000)
})
