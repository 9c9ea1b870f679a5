// Over a real network path: the agent in a network namespace of its own, the client in another, a veth
// pair between them with addresses in 10.200.x.0/30 that exist only inside these two namespaces. Taking
// the link down mid-test must give the client a clear error within its deadline, never a hang. Needs
// root and iproute2 (skips with the reason otherwise); the namespaces go in a finally block, whatever
// happened.

import { execFileSync, spawnSync } from 'node:child_process'

import { describe, expect, test } from 'vitest'

import { spawnClient } from './spec-support.ts'
import { hostableBackend, spawnAgent, type SpawnedAgent } from './spawn-agent.ts'

const hosted = await hostableBackend()

/** Why this machine cannot build the namespaces, or undefined when it can. */
function unavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root to create network namespaces'
  if (spawnSync('ip', ['-V']).error !== undefined) return 'needs iproute2 (the ip command)'
  return undefined
}

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 10_000 })

describe(`over a veth pair between two network namespaces (agent hosting ${hosted})`, () => {
  test('calls go through; taking the link down gives the client a clear error within its deadline', async (ctx) => {
    const why = unavailable()
    if (why !== undefined) ctx.skip(why)
    const n = process.pid % 64
    const [agentNs, clientNs] = [`kvmconf-a${process.pid}`, `kvmconf-c${process.pid}`]
    const [agentIf, clientIf] = [`kva${process.pid % 100_000}`, `kvc${process.pid % 100_000}`]
    const net = `10.200.${n * 4}`
    let agent: SpawnedAgent | undefined
    let client: ReturnType<typeof spawnClient> | undefined
    try {
      try {
        ip('netns', 'add', agentNs)
        ip('netns', 'add', clientNs)
      } catch (e) {
        ctx.skip(`cannot create network namespaces here: ${String((e as { stderr?: Buffer }).stderr ?? e).trim()}`)
      }
      ip('link', 'add', agentIf, 'type', 'veth', 'peer', 'name', clientIf)
      ip('link', 'set', agentIf, 'netns', agentNs)
      ip('link', 'set', clientIf, 'netns', clientNs)
      ip('-n', agentNs, 'addr', 'add', `${net}.1/30`, 'dev', agentIf)
      ip('-n', clientNs, 'addr', 'add', `${net}.2/30`, 'dev', clientIf)
      for (const [ns, dev] of [[agentNs, agentIf], [clientNs, clientIf], [agentNs, 'lo'], [clientNs, 'lo']] as const) {
        ip('-n', ns, 'link', 'set', dev, 'up')
      }

      // Not loopback and no TLS: the agent refuses unless told --insecure, which this closed link allows.
      agent = await spawnAgent({ backend: hosted, listen: `${net}.1:0`, args: ['--insecure'], netns: agentNs })
      expect(agent.address).toMatch(new RegExp(`^${net.replaceAll('.', '\\.')}\\.1:\\d+$`))
      const deadlineMs = 2000
      client = spawnClient('poll', {
        KVMCONF_AGENT: agent.address, KVMCONF_TOKEN_FILE: agent.tokenFile, KVMCONF_AGENT_DEADLINE_MS: String(deadlineMs),
      }, clientNs)
      await client.line(/^ready$/, 30_000)
      await new Promise((resolve) => setTimeout(resolve, 300)) // a few calls cross the link

      ip('-n', agentNs, 'link', 'set', agentIf, 'down')
      const line = await client.line(/^error /, 15_000)
      const report = JSON.parse(line.slice('error '.length)) as { name: string; code: string; agent: string; message: string; ms: number }
      expect(report).toMatchObject({ name: 'AgentError', code: 'UNAVAILABLE', agent: 'dead' })
      expect(report.message).toMatch(/no answer within \d+ ms, and the agent at .* does not answer ping either .*: the agent is dead or unreachable/)
      expect(report.ms, 'reported within the call deadline').toBeLessThanOrEqual(deadlineMs + 250)
    } finally {
      client?.child.kill('SIGKILL')
      await agent?.stop(2000)
      for (const ns of [agentNs, clientNs]) spawnSync('ip', ['netns', 'del', ns], { timeout: 10_000 })
    }
  }, 90_000)
})
