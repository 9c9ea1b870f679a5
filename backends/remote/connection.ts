// One client's connection to an agent: the Session stream (the handshake, then calls multiplexed by id)
// and every call's deadline. When a call's deadline passes, the connection tells a hung call from a dead
// agent the way kirk does after a test's timeout (libkirk/scheduler.py): it pings, on a call of its own.
// An answer means the agent is alive and this call is stuck on it; no answer (or a refused connection)
// means the agent is dead or unreachable. Either way the caller hears within the call's deadline: the
// call waits for its deadline less the ping's budget.

import {
  Client, Metadata, credentials, status, type ChannelCredentials, type ClientDuplexStream, type MethodDefinition, type ServiceError,
} from '@grpc/grpc-js'

import type { BackendInfo } from '../../harness/backend.ts'
import { KvmError } from '../../harness/errors.ts'
import { AgentError, type AgentStatus } from './agent-error.ts'
import { fromBackendInfo, fromLimits, fromReply, MalformedMessage } from './convert.ts'
import {
  AGENT_SERVICE, AUTH_HEADER, PROTOCOL_VERSION, type AgentMessageMsg, type Call, type ClientMessageMsg, type HandshakeMsg, type ReplyKind,
  type ReplyMsg, type ResultMsg,
} from './protocol.ts'
import type { Limits } from './session.ts'

export interface ConnectOptions {
  /** host:port of `kvmconf agent`. */
  address: string
  token: string
  /** TLS towards the agent: its CA, and a client certificate where the agent asks for one. */
  tls?: { ca: Buffer; cert?: Buffer | undefined; key?: Buffer | undefined; serverName?: string | undefined } | undefined
  /** Every call's deadline unless the call says otherwise (vcpuRun adds its own timeout). Default 30 s. */
  deadlineMs?: number | undefined
  /** How long the handshake may take. Default 10 s. */
  connectTimeoutMs?: number | undefined
  /** The most a ping after a call's deadline may take. Default 1 s. */
  pingTimeoutMs?: number | undefined
  /** For the agent's log. */
  clientVersion?: string | undefined
}

export interface Handshake {
  agentVersion: string
  session: string
  hostedBackend: string
  info: BackendInfo
  systemFd: number
  limits: Limits
  maxMessageBytes: number
}

export const DEFAULT_DEADLINE_MS = 30_000
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000
const DEFAULT_PING_TIMEOUT_MS = 1000
/** How long close() waits for the agent to confirm it freed the session. */
const CLOSE_TIMEOUT_MS = 15_000

const STATUS_NAMES = new Map<number, AgentStatus>(
  Object.entries(status).filter(([, v]) => typeof v === 'number').map(([k, v]) => [v as number, k as AgentStatus]),
)

const SESSION = AGENT_SERVICE.Session as MethodDefinition<ClientMessageMsg | Buffer, AgentMessageMsg>
const PING = AGENT_SERVICE.Ping as MethodDefinition<object, unknown>
/** The client serialises each message itself (to check its size); those go out as they are. */
const passBuffers = (m: ClientMessageMsg | Buffer) => (Buffer.isBuffer(m) ? m : SESSION.requestSerialize(m))

interface Pending {
  name: Call
  resolve: (r: ResultMsg) => void
  reject: (e: unknown) => void
  timer: NodeJS.Timeout
}

export class AgentConnection {
  private readonly pending = new Map<string, Pending>()
  private nextId = 0
  /** Why the session is over, once it is. */
  private lost: AgentError | undefined
  private closed = false
  private readonly ended: Promise<void>

  private constructor(
    private readonly client: Client,
    private readonly stream: ClientDuplexStream<ClientMessageMsg | Buffer, AgentMessageMsg>,
    private readonly auth: Metadata,
    readonly address: string,
    readonly handshake: Handshake,
    private readonly opts: { deadlineMs: number; pingTimeoutMs: number },
  ) {
    stream.on('data', (msg: AgentMessageMsg) => {
      const result = msg.result
      if (!result) return
      const p = this.pending.get(result.id)
      if (p === undefined) return // its deadline passed already
      this.pending.delete(result.id)
      clearTimeout(p.timer)
      p.resolve(result)
    })
    this.ended = new Promise<void>((resolve) => {
      stream.on('status', () => resolve())
      stream.on('error', (e: ServiceError) => {
        this.lose(sessionLost(address, e))
        resolve()
      })
      stream.on('end', () => this.lose(new AgentError('ABORTED', 'Session', `the agent at ${address} ended the session`, 'alive')))
    })
  }

  /** Connects, authenticates and shakes hands; rejects with AgentError when any of it fails. */
  static async open(o: ConnectOptions): Promise<AgentConnection> {
    const channelOptions: Record<string, string | number> = {
      // The agent's limit (from the handshake) is checked before sending; its answers are within it.
      'grpc.max_receive_message_length': -1,
      'grpc.max_send_message_length': -1,
      'grpc.enable_retries': 0,
    }
    let creds: ChannelCredentials = credentials.createInsecure()
    if (o.tls !== undefined) {
      creds = credentials.createSsl(o.tls.ca, o.tls.key ?? null, o.tls.cert ?? null)
      if (o.tls.serverName !== undefined) channelOptions['grpc.ssl_target_name_override'] = o.tls.serverName
    }
    const client = new Client(o.address, creds, channelOptions)
    const auth = new Metadata()
    auth.set(AUTH_HEADER, `Bearer ${o.token}`)
    const stream = client.makeBidiStreamRequest(SESSION.path, passBuffers, SESSION.responseDeserialize, auth.clone())
    stream.write({ hello: { protocolVersion: PROTOCOL_VERSION, clientVersion: o.clientVersion ?? 'kvmconf' } })
    const connectMs = o.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS
    let timer: NodeJS.Timeout | undefined
    const listeners: [string, (...args: any[]) => void][] = []
    try {
      const first = await new Promise<AgentMessageMsg>((resolve, reject) => {
        timer = setTimeout(() => reject(new AgentError('DEADLINE_EXCEEDED', 'Session', `no handshake from the agent at ${o.address} within ${connectMs} ms`)), connectMs)
        listeners.push(
          ['data', resolve],
          ['error', (e: ServiceError) => reject(statusError('Session', o.address, e))],
          ['end', () => reject(new AgentError('ABORTED', 'Session', `the agent at ${o.address} ended the session before its handshake`))],
        )
        for (const [event, f] of listeners) stream.on(event, f)
      })
      const h: HandshakeMsg | null | undefined = first.handshake
      if (h === null || h === undefined) throw new AgentError('INTERNAL', 'Session', 'the first message of the session is not a handshake')
      if (h.protocolVersion !== PROTOCOL_VERSION) {
        throw new AgentError('FAILED_PRECONDITION', 'Session',
          `protocol version mismatch: the agent at ${o.address} (kvmconf ${h.agentVersion}) speaks ${h.protocolVersion}, this client ${PROTOCOL_VERSION}`)
      }
      const handshake: Handshake = {
        agentVersion: h.agentVersion, session: h.session, hostedBackend: h.hostedBackend, info: fromBackendInfo(h.info),
        systemFd: h.systemFd, limits: fromLimits(h.limits), maxMessageBytes: h.maxMessageBytes,
      }
      for (const [event, f] of listeners) stream.off(event, f)
      return new AgentConnection(client, stream, auth, o.address, handshake, {
        deadlineMs: o.deadlineMs ?? DEFAULT_DEADLINE_MS, pingTimeoutMs: o.pingTimeoutMs ?? DEFAULT_PING_TIMEOUT_MS,
      })
    } catch (e) {
      for (const [event, f] of listeners) stream.off(event, f)
      stream.on('error', () => {})
      stream.cancel()
      client.close()
      if (e instanceof MalformedMessage) throw new AgentError('INTERNAL', 'Session', `the handshake is malformed: ${e.message}`)
      throw e
    } finally {
      clearTimeout(timer)
    }
  }

  /** Every call's deadline unless it says otherwise. */
  get deadlineMs(): number {
    return this.opts.deadlineMs
  }

  /**
   * One call: its Reply unpacked to `kind`, its Failure thrown as the typed error it stands for, or an
   * AgentError (a Refusal, a lost session, a deadline passed). `deadlineMs` bounds it, ping included.
   */
  async invoke<K extends ReplyKind>(name: Call, request: object, kind: K, deadlineMs = this.opts.deadlineMs): Promise<NonNullable<ReplyMsg[K]>> {
    const result = await this.call(name, request, deadlineMs)
    if (result.outcome === 'refusal' && result.refusal) {
      throw new AgentError((result.refusal.code as AgentStatus) || 'UNKNOWN', name, result.refusal.message, 'alive')
    }
    try {
      return fromReply(result.reply ?? {}, kind)
    } catch (e) {
      if (e instanceof MalformedMessage) throw new AgentError('INTERNAL', name, `the agent's reply is malformed: ${e.message}`)
      throw e
    }
  }

  /** How long the agent took to answer a ping, in ms; rejects when it does not within `timeoutMs`. */
  ping(timeoutMs = this.opts.pingTimeoutMs): Promise<number> {
    const start = performance.now()
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(PING.path, PING.requestSerialize, PING.responseDeserialize, {}, this.auth.clone(),
        { deadline: Date.now() + timeoutMs }, (err) => (err ? reject(err) : resolve(performance.now() - start)))
    })
  }

  /** Ends the session (the agent frees what it holds and then ends the stream), then the channel. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    if (this.lost === undefined) {
      this.stream.end()
      let timer: NodeJS.Timeout | undefined
      await Promise.race([this.ended, new Promise((resolve) => (timer = setTimeout(resolve, CLOSE_TIMEOUT_MS)))])
      clearTimeout(timer)
    }
    this.stream.cancel()
    this.client.close()
  }

  private call(name: Call, request: object, deadlineMs: number): Promise<ResultMsg> {
    if (this.closed) return Promise.reject(new KvmError('EBADF', name, 'the remote backend is closed'))
    if (this.lost !== undefined) return Promise.reject(new AgentError(this.lost.code, name, this.lost.message, this.lost.agent))
    const id = String(++this.nextId)
    const pingBudget = Math.min(this.opts.pingTimeoutMs, deadlineMs / 4)
    const wait = Math.max(1, Math.round(deadlineMs - pingBudget))
    const bytes = SESSION.requestSerialize({ call: { id, deadlineMs: wait, [name]: request } })
    if (bytes.length > this.handshake.maxMessageBytes) {
      return Promise.reject(new AgentError('RESOURCE_EXHAUSTED', name,
        `the call is ${bytes.length} bytes, over the agent's message limit of ${this.handshake.maxMessageBytes}`))
    }
    return new Promise<ResultMsg>((resolve, reject) => {
      const timer = setTimeout(() => void this.timedOut(id, wait, pingBudget), wait)
      this.pending.set(id, { name, resolve, reject, timer })
      this.stream.write(bytes)
    })
  }

  /** A call's deadline passed: tell the agent (it kicks a vCPU the call runs), then ping to say why. */
  private async timedOut(id: string, waited: number, pingBudget: number): Promise<void> {
    const p = this.pending.get(id)
    if (p === undefined) return
    this.pending.delete(id)
    if (!this.stream.destroyed) this.stream.write({ cancel: { id } })
    const pong = await this.ping(pingBudget).then((ms) => ms, (e: ServiceError) => e)
    if (typeof pong === 'number') {
      p.reject(new AgentError('DEADLINE_EXCEEDED', p.name,
        `no answer within ${waited} ms, but the agent at ${this.address} answers ping (${pong.toFixed(1)} ms): the call is hung on the agent`, 'alive'))
    } else {
      p.reject(new AgentError('UNAVAILABLE', p.name,
        `no answer within ${waited} ms, and the agent at ${this.address} does not answer ping either (${pong.details}): the agent is dead or unreachable`, 'dead'))
    }
  }

  /** The session is over: every call in flight fails with why, and so does every later one. */
  private lose(why: AgentError): void {
    if (this.closed) return
    this.lost ??= why
    for (const [id, p] of this.pending) {
      this.pending.delete(id)
      clearTimeout(p.timer)
      p.reject(new AgentError(why.code, p.name, why.message, why.agent))
    }
  }
}

/** A failed stream's status as an AgentError. */
function statusError(name: string, address: string, e: ServiceError): AgentError {
  const code = STATUS_NAMES.get(e.code) ?? 'UNKNOWN'
  if (code === 'UNAVAILABLE') return new AgentError(code, name, `the agent at ${address} is unreachable: ${e.details}`, 'dead')
  return new AgentError(code, name, e.details || code)
}

function sessionLost(address: string, e: ServiceError): AgentError {
  if (e.code === status.ABORTED) return new AgentError('ABORTED', 'Session', `the agent at ${address} ended the session: ${e.details}`, 'alive')
  return statusError('Session', address, e)
}
