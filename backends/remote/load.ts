// loadRemote(): the remote backend connected to the agent the environment names, or why this run
// cannot have it (no agent configured, no token, the agent unreachable or refusing). Never throws.
//
//   KVMCONF_AGENT=HOST:PORT          the agent (`kvmconf agent`); npm test starts one for the remote project
//   KVMCONF_TOKEN_FILE=F             the file holding its token
//   KVMCONF_TLS_CA=F                 TLS: the CA that signed the agent's certificate (TLS is off without it)
//   KVMCONF_TLS_CERT=F KVMCONF_TLS_KEY=F   a client certificate, where the agent asks for one (--tls-ca)
//   KVMCONF_TLS_SERVER_NAME=N        the name to check the agent's certificate against, if not the host's
//   KVMCONF_AGENT_DEADLINE_MS=N      every call's deadline (default 30000)

import { readFileSync } from 'node:fs'

import type { BackendLoad } from '../../harness/backend.ts'
import { AgentError } from './agent-error.ts'
import { connectRemote } from './client.ts'
import type { ConnectOptions } from './connection.ts'

export interface RemoteLoadOptions {
  agent?: string | undefined
  tokenFile?: string | undefined
  env?: NodeJS.ProcessEnv
}

/** The token in `file`: its content without surrounding whitespace; empty is refused. */
export function readToken(file: string): string {
  const token = readFileSync(file, 'utf8').trim()
  if (token === '') throw new Error(`${file}: the token file is empty`)
  return token
}

export async function loadRemote(opts: RemoteLoadOptions = {}): Promise<BackendLoad> {
  const env = opts.env ?? process.env
  const agent = opts.agent ?? env.KVMCONF_AGENT
  const tokenFile = opts.tokenFile ?? env.KVMCONF_TOKEN_FILE
  if (!agent) return { available: false, reason: 'no agent to connect to: set KVMCONF_AGENT=HOST:PORT and KVMCONF_TOKEN_FILE=F' }
  if (!tokenFile) return { available: false, reason: `no token for the agent at ${agent}: set KVMCONF_TOKEN_FILE=F` }
  try {
    const connect: ConnectOptions = { address: agent, token: readToken(tokenFile), clientVersion: clientVersion() }
    if (env.KVMCONF_TLS_CA) {
      connect.tls = {
        ca: readFileSync(env.KVMCONF_TLS_CA),
        cert: env.KVMCONF_TLS_CERT ? readFileSync(env.KVMCONF_TLS_CERT) : undefined,
        key: env.KVMCONF_TLS_KEY ? readFileSync(env.KVMCONF_TLS_KEY) : undefined,
        serverName: env.KVMCONF_TLS_SERVER_NAME || undefined,
      }
    }
    if (env.KVMCONF_AGENT_DEADLINE_MS) connect.deadlineMs = Number(env.KVMCONF_AGENT_DEADLINE_MS)
    return { available: true, backend: await connectRemote(connect) }
  } catch (e) {
    const why = AgentError.is(e) || e instanceof Error ? e.message : String(e)
    return { available: false, reason: `the agent at ${agent}: ${why}` }
  }
}

function clientVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
    return `kvmconf ${pkg.version} (pid ${process.pid})`
  } catch {
    return `kvmconf (pid ${process.pid})`
  }
}
