// `kvmconf run --kmsg` over remote: an agent started with --kmsg marks its machine's /dev/kmsg around a
// client's test and sends back the lines between the markers; one started without it refuses, saying
// how to start it. (The agent here runs on this machine, so a line this test writes to /dev/kmsg is a
// line of the agent's kernel log.)

import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { afterEach, describe, expect, test } from 'vitest'

import { KMSG, kernelLogProblem } from '../../harness/kernel-log.ts'
import { startTestAgent, type TestAgent } from './spec-support.ts'

let agents: TestAgent[] = []
afterEach(async () => {
  await Promise.all(agents.map((a) => a.stop()))
  agents = []
})

const problem = kernelLogProblem()

describe('the agent machine\'s kernel log', () => {
  test.skipIf(problem !== undefined)(`--kmsg: the lines logged between a test's markers come back with it${problem ? ` (skipped: ${problem})` : ''}`, async () => {
    const a = await startTestAgent({ kernelLog: true })
    agents.push(a)
    const kvm = await a.connect()
    try {
      const line = `kvmconf-spec[${randomBytes(4).toString('hex')}]: logged during the test`
      writeFileSync(KMSG, 'kvmconf-spec: logged before the test\n')
      await kvm.kernelLogStart('remote kernel-log spec')
      writeFileSync(KMSG, `${line}\n`)
      const log = await kvm.kernelLogFinish('remote kernel-log spec')
      expect(log.lines.some((l) => l.endsWith(line)), log.lines.join('\n')).toBe(true)
      expect(log.lines.some((l) => l.includes('logged before the test')), 'a line from before the start marker').toBe(false)
      expect(log.warnings).toEqual([])
      expect(log.taintAfter).toBeGreaterThanOrEqual(0)
    } finally {
      await kvm.close()
    }
  })

  test('without --kmsg the agent refuses, saying how to start it, and the session goes on', async () => {
    const a = await startTestAgent()
    agents.push(a)
    const kvm = await a.connect()
    try {
      await expect(kvm.kernelLogStart('t')).rejects.toThrow(/start it with `kvmconf agent --kmsg`/)
      expect(await kvm.getApiVersion()).toBe(12)
    } finally {
      await kvm.close()
    }
  })
})
