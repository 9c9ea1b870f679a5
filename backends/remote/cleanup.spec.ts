// Processes dying mid-test, with `kvmconf agent` as a child process hosting the backend the remote
// project hosts (native where it loads, else the emulator): a client killed while it holds VMs, vCPUs
// and mappings leaves the agent's fds and memory as they were; an agent killed under a client fails the
// client's calls with a clear error within their deadline; a vCPU that overruns is kicked on the agent.

import { afterAll, beforeAll, describe, expect, test } from 'vitest'

import { VcpuTimeout } from '../../harness/errors.ts'
import { AgentError } from './agent-error.ts'
import { connectRemote } from './client.ts'
import { fdCount, rssBytes, spawnClient, until } from './spec-support.ts'
import { hostableBackend, spawnAgent, type SpawnedAgent } from './spawn-agent.ts'

const MiB = 1 << 20
const hosted = await hostableBackend()

describe(`a client killed mid-test (agent hosting ${hosted})`, () => {
  let agent: SpawnedAgent
  beforeAll(async () => {
    agent = await spawnAgent({ backend: hosted })
  })
  afterAll(async () => {
    await agent?.stop()
  })

  /** Runs the `hold` client until it is ready, then SIGKILLs it; resolves once the agent ended its session. */
  async function holdAndKill(): Promise<{ fdsHeld: number; rssHeld: number }> {
    const sessions = agent.stderr().split('\n').filter((l) => l.includes('session ')).length
    const client = spawnClient('hold', { KVMCONF_AGENT: agent.address, KVMCONF_TOKEN_FILE: agent.tokenFile })
    try {
      await client.line(/^ready /, 30_000)
      const held = { fdsHeld: await fdCount(agent.pid), rssHeld: await rssBytes(agent.pid) }
      client.child.kill('SIGKILL')
      const ended = await until(() => agent.stderr().split('\n').filter((l) => l.includes('session ')).length > sessions, 15_000)
      expect(ended, `the agent logged the end of the session: ${agent.stderr()}`).toBe(true)
      return held
    } finally {
      client.child.kill('SIGKILL')
    }
  }

  test("the agent's open fds and memory return to their baseline", async () => {
    // A first client warms the agent up (the hosted backend's code, V8's), so the baseline is steady.
    await holdAndKill()
    const fds = await fdCount(agent.pid)
    const rss = await rssBytes(agent.pid)

    const { fdsHeld, rssHeld } = await holdAndKill()
    if (hosted === 'native') {
      expect(fdsHeld, 'the client held VMs, vCPUs, memfds and guest_memfds on the agent').toBeGreaterThan(fds + 10)
      expect(rssHeld, 'the client held 64 MiB of touched memory on the agent').toBeGreaterThan(rss + 48 * MiB)
    }
    expect(await until(async () => (await fdCount(agent.pid)) === fds, 10_000), `fds back to ${fds}`).toBe(true)
    const settled = await until(async () => (await rssBytes(agent.pid)) < rss + 16 * MiB, 10_000)
    expect(settled, `RSS ${((await rssBytes(agent.pid)) / MiB).toFixed(1)} MiB, baseline ${(rss / MiB).toFixed(1)} MiB`).toBe(true)
    const last = agent.stderr().trim().split('\n').at(-1) ?? ''
    expect(last).toMatch(/freed 3 vm, .*3 mapping.*; the client disconnected$/)
  }, 90_000)
})

describe(`the agent killed mid-test (hosting ${hosted})`, () => {
  test("the client's calls fail with a clear error within their deadline", async () => {
    const agent = await spawnAgent({ backend: hosted })
    try {
      const kvm = await connectRemote({ address: agent.address, token: agent.token, deadlineMs: 3000 })
      const vm = await kvm.createVm()
      // A KVM_RUN in flight when the agent dies (a guest spinning forever), where the backend runs vCPUs.
      let running: Promise<unknown> = Promise.resolve()
      if ((await kvm.info()).features.includes('vcpu')) {
        const vcpu = await vm.createVcpu(0)
        await vcpu.loadProgram({ steps: [{ op: 'jump', to: 0 }] })
        running = vcpu.run({ timeoutMs: 20_000 }).then(() => undefined, (e: unknown) => e)
      }
      await new Promise((resolve) => setTimeout(resolve, 300))
      const killedAt = Date.now()
      agent.child.kill('SIGKILL')
      const inFlight = await running
      if (inFlight !== undefined) {
        expect(AgentError.is(inFlight) && inFlight.code).toBe('UNAVAILABLE')
        expect(Date.now() - killedAt, 'the run in flight failed at once').toBeLessThan(3000)
      }
      const start = Date.now()
      const e = await vm.checkExtension(1).then(() => undefined, (err: unknown) => err)
      expect(AgentError.is(e), String(e)).toBe(true)
      expect(e).toMatchObject({ code: 'UNAVAILABLE', agent: 'dead' })
      expect((e as Error).message).toMatch(/the agent at .* is unreachable/)
      expect(Date.now() - start, 'within its deadline').toBeLessThan(3000)
      await kvm.close()
    } finally {
      await agent.stop()
    }
  }, 60_000)
})

describe(`a vCPU that overruns its deadline (hosting ${hosted})`, () => {
  test('is kicked on the agent and reported as VcpuTimeout; the vCPU runs again afterwards', async (ctx) => {
    const agent = await spawnAgent({ backend: hosted })
    try {
      const kvm = await connectRemote({ address: agent.address, token: agent.token, deadlineMs: 1000 })
      if (!(await kvm.info()).features.includes('vcpu')) ctx.skip(`the ${hosted} backend the agent hosts cannot do 'vcpu'`)
      const vm = await kvm.createVm()
      const vcpu = await vm.createVcpu(0)
      await vcpu.loadProgram({ steps: [{ op: 'jump', to: 0 }] })
      const start = Date.now()
      const e = await vcpu.run({ timeoutMs: 300 }).then(() => undefined, (err: unknown) => err)
      expect(VcpuTimeout.is(e), String(e)).toBe(true)
      expect(e).toMatchObject({ timeoutMs: 300 })
      expect(Date.now() - start).toBeLessThan(300 + 1500)
      // No timeout of its own: the agent kicks it before the call's deadline (1 s here, plus the kick's grace).
      const bounded = await vcpu.run().then(() => undefined, (err: unknown) => err)
      expect(VcpuTimeout.is(bounded), String(bounded)).toBe(true)
      await vcpu.loadProgram({ steps: [{ op: 'hlt' }] })
      expect(await vcpu.run({ timeoutMs: 5000 })).toEqual({ kind: 'hlt' })
      await kvm.close()
    } finally {
      await agent.stop()
    }
  }, 60_000)
})
