// The remote vitest project's globalSetup: a `kvmconf agent` on an ephemeral loopback port, hosting the
// native backend where it loads and the emulator otherwise (KVMCONF_AGENT_BACKEND overrides), with a
// fresh token in a private temporary directory. Every conformance test of the project then runs through
// the network path. The address and token file reach the workers as KVMCONF_AGENT and
// KVMCONF_TOKEN_FILE (vitest builds the workers' environment after globalSetup has run).
//
// An agent given from outside (KVMCONF_AGENT already set) is used as it is, and none is started. An
// agent that fails to start fails the run: the remote project never passes by skipping.

import { hostableBackend, spawnAgent } from './spawn-agent.ts'

export default async function setup(): Promise<(() => Promise<void>) | undefined> {
  if (process.env.KVMCONF_AGENT) return undefined
  const backend = await hostableBackend()
  const agent = await spawnAgent({ backend })
  process.env.KVMCONF_AGENT = agent.address
  process.env.KVMCONF_TOKEN_FILE = agent.tokenFile
  return async () => {
    delete process.env.KVMCONF_AGENT
    delete process.env.KVMCONF_TOKEN_FILE
    await agent.stop()
  }
}
