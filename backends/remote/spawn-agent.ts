// Starting `kvmconf agent` as a child process on an ephemeral port, with a fresh token in a private
// temporary directory: for the remote vitest project's globalSetup, the agent's self-tests and the
// benchmark. The agent prints its bound address alone on stdout's first line; that is what we wait for.

import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const KVMCONF_BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../harness/cli/kvmconf.mjs')

export interface SpawnAgentOptions {
  backend: 'native' | 'emulator'
  /** Default 127.0.0.1:0. */
  listen?: string
  /** More `kvmconf agent` flags (limits, --idle-timeout, --insecure, TLS). */
  args?: string[]
  /** Run the agent inside this network namespace (`ip netns exec`; root only). */
  netns?: string
  /** How long the agent may take to print its address. Default 30 s. */
  startTimeoutMs?: number
}

export interface SpawnedAgent {
  /** host:port the agent is bound to. */
  readonly address: string
  readonly pid: number
  readonly token: string
  readonly tokenFile: string
  readonly child: ChildProcess
  /** What the agent wrote on stderr so far (its session lines). */
  stderr(): string
  /** SIGTERM, then SIGKILL after `graceMs`; removes the token's directory. */
  stop(graceMs?: number): Promise<void>
}

/** The backend an agent for this run should host: KVMCONF_AGENT_BACKEND, else native where it loads, else the emulator. */
export async function hostableBackend(): Promise<'native' | 'emulator'> {
  const forced = process.env.KVMCONF_AGENT_BACKEND
  if (forced === 'native' || forced === 'emulator') return forced
  if (forced) throw new Error(`KVMCONF_AGENT_BACKEND=${forced}: expected native or emulator`)
  const { loadBackend } = await import('../index.ts')
  const native = await loadBackend('native')
  if (!native.available) return 'emulator'
  await native.backend.close()
  return 'native'
}

export async function spawnAgent(opts: SpawnAgentOptions): Promise<SpawnedAgent> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'kvmconf-agent-'))
  const token = randomBytes(32).toString('hex')
  const tokenFile = path.join(dir, 'token')
  await writeFile(tokenFile, `${token}\n`, { mode: 0o600 })
  const agentArgs = [KVMCONF_BIN, 'agent', '--listen', opts.listen ?? '127.0.0.1:0', '--backend', opts.backend,
    '--token-file', tokenFile, ...(opts.args ?? [])]
  const [cmd, args] = opts.netns === undefined
    ? [process.execPath, agentArgs]
    : ['ip', ['netns', 'exec', opts.netns, process.execPath, ...agentArgs]]
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr?.setEncoding('utf8').on('data', (s: string) => {
    stderr += s
  })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))

  const stop = async (graceMs = 5000): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
      await exited
      clearTimeout(timer)
    }
    await rm(dir, { recursive: true, force: true })
  }

  const startMs = opts.startTimeoutMs ?? 30_000
  try {
    const address = await new Promise<string>((resolve, reject) => {
      let out = ''
      const timer = setTimeout(() => reject(new Error(`kvmconf agent printed no address within ${startMs} ms: ${stderr.trim()}`)), startMs)
      child.stdout?.setEncoding('utf8').on('data', (s: string) => {
        out += s
        const nl = out.indexOf('\n')
        if (nl >= 0) {
          clearTimeout(timer)
          resolve(out.slice(0, nl).trim())
        }
      })
      child.once('exit', (code, signal) => {
        clearTimeout(timer)
        reject(new Error(`kvmconf agent exited (${signal ?? code}) before listening: ${stderr.trim()}`))
      })
    })
    return { address, pid: child.pid as number, token, tokenFile, child, stderr: () => stderr, stop }
  } catch (e) {
    await stop(1000)
    throw e
  }
}
