// Shared by the remote backend's self-tests: an agent in this process hosting the emulator (fast, and
// with a hosted backend the test can watch or make hang), a raw Session stream for sending what no
// well-behaved client would, a client child process to kill, and /proc readings of an agent process.

import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import { Client, credentials, Metadata, type ClientDuplexStream, type MethodDefinition, type ServiceError } from '@grpc/grpc-js'

import type { Backend, BackendLoad } from '../../harness/backend.ts'
import { loadBackend } from '../index.ts'
import { startAgent, type AgentConfig, type RunningAgent } from './agent.ts'
import { connectRemote, type RemoteBackend } from './client.ts'
import type { ConnectOptions } from './connection.ts'
import { AGENT_SERVICE, AUTH_HEADER, PROTOCOL_VERSION } from './protocol.ts'
import { DEFAULT_LIMITS } from './session.ts'

export interface TestAgent {
  agent: RunningAgent
  address: string
  token: string
  /** Every hosted backend the agent opened, in order, with whether it was closed and what was called on it. */
  hosted: { calls: string[]; closed: boolean }[]
  log: string[]
  connect(opts?: Partial<ConnectOptions>): Promise<RemoteBackend>
  stop(): Promise<void>
}

/**
 * An agent in this process on an ephemeral loopback port, hosting the emulator. `wrap` may replace a
 * hosted backend's methods (to make one hang); every method called on it is recorded.
 */
export async function startTestAgent(opts: Partial<AgentConfig> & { wrap?: (b: Backend) => Backend } = {}): Promise<TestAgent> {
  const token = randomBytes(16).toString('hex')
  const hosted: TestAgent['hosted'] = []
  const log: string[] = []
  const open = async (): Promise<BackendLoad> => {
    const load = await loadBackend('emulator')
    if (!load.available) return load
    const record = { calls: [] as string[], closed: false }
    hosted.push(record)
    const inner = opts.wrap ? opts.wrap(load.backend) : load.backend
    const backend = new Proxy(inner, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver)
        if (typeof value !== 'function') return value
        return (...args: unknown[]) => {
          record.calls.push(String(prop))
          if (prop === 'close') record.closed = true
          return (value as (...a: unknown[]) => unknown).apply(target, args)
        }
      },
    })
    return { available: true, backend }
  }
  const agent = await startAgent({
    host: '127.0.0.1', port: 0, token, limits: DEFAULT_LIMITS, idleTimeoutMs: 60_000, maxMessageBytes: 1 << 20,
    maxSessions: 16, version: 'test', log: (line) => log.push(line), hosted: { name: 'emulator', open }, ...opts,
  })
  return {
    agent, address: agent.address, token, hosted, log,
    connect: (o = {}) => connectRemote({ address: agent.address, token, deadlineMs: 5000, ...o }),
    stop: () => agent.close(),
  }
}

const SESSION = AGENT_SERVICE.Session as MethodDefinition<object | Buffer, any>

/** A raw Session stream: write any object or raw bytes, read what comes back and how it ends. */
export function rawSession(address: string, token: string | undefined): {
  stream: ClientDuplexStream<object | Buffer, any>
  messages: any[]
  status: Promise<ServiceError | { code: 0; details: string }>
  close(): void
} {
  const client = new Client(address, credentials.createInsecure())
  const md = new Metadata()
  if (token !== undefined) md.set(AUTH_HEADER, `Bearer ${token}`)
  const encode = (m: object | Buffer) => (Buffer.isBuffer(m) ? m : SESSION.requestSerialize(m))
  const stream = client.makeBidiStreamRequest(SESSION.path, encode, SESSION.responseDeserialize, md)
  const messages: any[] = []
  stream.on('data', (m) => messages.push(m))
  const status = new Promise<ServiceError | { code: 0; details: string }>((resolve) => {
    stream.on('error', (e: ServiceError) => resolve(e))
    stream.on('status', (s: { code: number; details: string }) => {
      if (s.code === 0) resolve({ code: 0, details: s.details })
    })
  })
  return { stream, messages, status, close: () => client.close() }
}

export const HELLO = { hello: { protocolVersion: PROTOCOL_VERSION, clientVersion: 'raw test client' } }

/** Waits until `cond` holds, polling every `everyMs`, at most `timeoutMs`; returns whether it held. */
export async function until(cond: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 20): Promise<boolean> {
  const end = Date.now() + timeoutMs
  for (;;) {
    if (await cond()) return true
    if (Date.now() >= end) return false
    await new Promise((resolve) => setTimeout(resolve, everyMs))
  }
}

/** Open fds of process `pid`. */
export async function fdCount(pid: number): Promise<number> {
  return (await readdir(`/proc/${pid}/fd`)).length
}

/** Resident set size of process `pid`, in bytes. */
export async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(status)
  return kb ? Number(kb[1]) * 1024 : 0
}

const CLIENT_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'spec-client.ts')

/**
 * spec-client.ts in a child process (optionally inside a network namespace), for a client that is
 * killed or cut off. Its stdout lines are collected; `line(re)` waits for one that matches.
 */
export function spawnClient(scenario: string, env: Record<string, string>, netns?: string): {
  child: ChildProcess
  line(re: RegExp, timeoutMs: number): Promise<string>
  output(): string
} {
  const args = ['--import', 'tsx', CLIENT_SCRIPT, scenario]
  const child = netns === undefined
    ? spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn('ip', ['netns', 'exec', netns, process.execPath, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout?.setEncoding('utf8').on('data', (s: string) => {
    out += s
  })
  child.stderr?.setEncoding('utf8').on('data', (s: string) => {
    err += s
  })
  return {
    child,
    output: () => out + err,
    async line(re, timeoutMs) {
      let found: string | undefined
      const ok = await until(() => {
        found = out.split('\n').find((l) => re.test(l))
        return found !== undefined || child.exitCode !== null
      }, timeoutMs)
      if (!ok || found === undefined) throw new Error(`the client printed no line matching ${re} within ${timeoutMs} ms: ${out}${err}`)
      return found
    },
  }
}
