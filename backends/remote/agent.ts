// The agent: a gRPC server on the machine under test that hosts a local backend for remote clients.
//
// A client's session is one Session stream, authenticated once by its token (compared in constant time
// over SHA-256 digests). The client's Hello is answered by the Handshake, then each Call by a Result
// (kvmconf.proto). When the stream ends (the client closes, disconnects, dies or idles past the timeout)
// the session's hosted backend is closed, which frees every VM, vCPU, fd and mapping the client made.
// One line is logged per session. The agent never imports a backend: it is handed a way to open one
// (harness/cli/agent.ts), and each session opens its own instance.

import { createHash, randomUUID, timingSafeEqual } from 'node:crypto'

import {
  Server, ServerCredentials, status, type Metadata, type MethodDefinition, type ServerDuplexStream, type ServerUnaryCall,
  type ServiceDefinition, type UntypedServiceImplementation, type sendUnaryData,
} from '@grpc/grpc-js'

import type { BackendLoad } from '../../harness/backend.ts'
import { MalformedMessage, toBackendInfo, toFailure, toLimits } from './convert.ts'
import { HANDLERS, type CallContext } from './handlers.ts'
import {
  AGENT_SERVICE, AUTH_HEADER, CALLS, PROTOCOL_VERSION, type AgentMessageMsg, type Call, type CallMsg, type ClientMessageMsg,
  type HelloMsg, type ReplyMsg,
} from './protocol.ts'
import { AgentRefusal, Session, type Limits, type SessionSummary } from './session.ts'

export interface AgentConfig {
  /** Where to listen; the CLI refuses a non-loopback host without TLS unless told --insecure. */
  host: string
  /** 0: an ephemeral port, reported by the running agent. */
  port: number
  /** The backend to host: each session opens its own instance. */
  hosted: { name: string; open: () => Promise<BackendLoad> }
  token: string
  tls?: { cert: Buffer; key: Buffer; ca?: Buffer | undefined } | undefined
  limits: Limits
  /** A session with no call for this long is ended. */
  idleTimeoutMs: number
  /** The largest message the agent accepts or sends. */
  maxMessageBytes: number
  maxSessions: number
  /** Serve this machine's kernel log to clients (--kmsg): markers around their tests, the lines between. */
  kernelLog?: boolean
  /** kvmconf's version, for the handshake. */
  version: string
  log: (line: string) => void
}

export interface RunningAgent {
  readonly host: string
  readonly port: number
  /** host:port, with an IPv6 host in brackets. */
  readonly address: string
  sessionCount(): number
  /** Stops listening and ends every session (freeing what it holds). */
  close(): Promise<void>
}

export const DEFAULT_IDLE_TIMEOUT_MS = 300_000
export const DEFAULT_MAX_MESSAGE_BYTES = 16 << 20
export const DEFAULT_MAX_SESSIONS = 64
/** How long a new stream may take to say Hello. */
const HELLO_TIMEOUT_MS = 10_000
/** How long a half-close waits to see whether the connection dropped (the log says which it was). */
const HALF_CLOSE_GRACE_MS = 20
/** Calls one session may have in flight; more are refused. */
const MAX_IN_FLIGHT = 1024

const MALFORMED = Symbol('malformed')
const SESSION = AGENT_SERVICE.Session as MethodDefinition<unknown, AgentMessageMsg | Buffer>

type Stream = ServerDuplexStream<ClientMessageMsg & { [MALFORMED]?: string }, AgentMessageMsg | Buffer>

interface Live {
  session: Session
  stream: Stream
}

export function formatAddress(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}

const sha256 = (s: string) => createHash('sha256').update(s).digest()

export async function startAgent(cfg: AgentConfig): Promise<RunningAgent> {
  const expected = sha256(cfg.token)
  const sessions = new Map<string, Live>()
  let nextHandle = 0
  const allocate = () => String(++nextHandle)

  /** Why the metadata does not authenticate its call, or undefined when it does. */
  const refuseAuth = (md: Metadata): string | undefined => {
    const values = md.get(AUTH_HEADER)
    if (values.length === 0) return 'no token (metadata "authorization: Bearer <token>")'
    const match = values.length === 1 && typeof values[0] === 'string' ? /^Bearer (.+)$/.exec(values[0]) : null
    if (match === null) return 'malformed authorization metadata'
    return timingSafeEqual(sha256(match[1] as string), expected) ? undefined : 'wrong token'
  }

  /**
   * Ends a session once and frees what it holds, logging its line. An end the agent decides (`code`: idle,
   * shutdown, a protocol violation) is told to the client at once; the client's own half-close is
   * answered once everything is freed, so that its close() returns when the agent is clean.
   */
  const endSession = async (live: Live, reason: string, code?: number): Promise<void> => {
    if (sessions.get(live.session.id) !== live) return
    sessions.delete(live.session.id)
    if (code !== undefined) fail(live.stream, code, reason)
    try {
      cfg.log(sessionLine(await live.session.end(reason)))
    } catch (e) {
      cfg.log(`session ${live.session.id.slice(0, 8)}: ending it failed: ${String(e)}`)
    }
    if (!live.stream.destroyed && live.stream.writable) live.stream.end()
  }

  /** Writes a message, replacing a Result too large to send by its Refusal (a too-large write would end the stream). */
  const send = (stream: Stream, msg: AgentMessageMsg): void => {
    if (stream.destroyed || !stream.writable) return
    let bytes = SESSION.responseSerialize(msg)
    if (bytes.length > cfg.maxMessageBytes && msg.result) {
      const refusal = { code: 'RESOURCE_EXHAUSTED', message: `the result is ${bytes.length} bytes, over the agent's message limit of ${cfg.maxMessageBytes}` }
      bytes = SESSION.responseSerialize({ result: { id: msg.result.id, refusal } })
    }
    stream.write(bytes)
  }

  const dispatch = (live: Live, call: CallMsg, cancels: Map<string, Set<() => void>>): void => {
    const { session, stream } = live
    const id = call.id
    const refuse = (code: string, message: string) => send(stream, { result: { id, refusal: { code, message } } })
    const name = call.request
    const request = name === undefined ? undefined : call[name]
    if (name === undefined || !(CALLS as readonly string[]).includes(name) || request === null || request === undefined) {
      return refuse('INVALID_ARGUMENT', `call ${id}: no request`)
    }
    if (session.ended) return refuse('ABORTED', `the session ended: ${session.endReason}`)
    if (cancels.size >= MAX_IN_FLIGHT) return refuse('RESOURCE_EXHAUSTED', `calls in flight: ${cancels.size} of ${MAX_IN_FLIGHT}`)
    const onCancel = new Set<() => void>()
    cancels.set(id, onCancel)
    const ctx: CallContext = {
      deadline: call.deadlineMs > 0 ? Date.now() + call.deadlineMs : Infinity,
      onCancel(f) {
        onCancel.add(f)
        return () => onCancel.delete(f)
      },
    }
    session.track(() => HANDLERS[name as Call](session, request as never, ctx)).then(
      (value) => send(stream, { result: { id, reply: value } }),
      (e: unknown) => {
        if (e instanceof AgentRefusal) return refuse(e.status, e.message)
        if (e instanceof MalformedMessage) return refuse('INVALID_ARGUMENT', `malformed ${name} request: ${e.message}`)
        let reply: ReplyMsg
        try {
          reply = { failure: toFailure(e) }
        } catch (encoding) {
          return refuse('INTERNAL', `${name}: the agent could not encode its error: ${String(encoding)}`)
        }
        send(stream, { result: { id, reply } })
      },
    ).finally(() => cancels.delete(id))
  }

  const hello = async (stream: Stream, req: HelloMsg): Promise<Live | undefined> => {
    if (req.protocolVersion !== PROTOCOL_VERSION) {
      fail(stream, status.FAILED_PRECONDITION,
        `protocol version mismatch: the client speaks ${req.protocolVersion}, this agent (kvmconf ${cfg.version}) speaks ${PROTOCOL_VERSION}`)
      return undefined
    }
    if (sessions.size >= cfg.maxSessions) {
      fail(stream, status.RESOURCE_EXHAUSTED, `sessions: ${sessions.size} of ${cfg.maxSessions} open`)
      return undefined
    }
    const load = await cfg.hosted.open().catch((e: unknown): BackendLoad => ({ available: false, reason: String(e) }))
    if (!load.available) {
      fail(stream, status.FAILED_PRECONDITION, `the ${cfg.hosted.name} backend is not available on the agent: ${load.reason}`)
      return undefined
    }
    const backend = load.backend
    const info = await backend.info()
    const session = new Session(randomUUID(), stream.getPeer(), req.clientVersion || 'unknown client', backend, cfg.limits, allocate, cfg.kernelLog === true)
    if (stream.cancelled || stream.destroyed) {
      cfg.log(sessionLine(await session.end('the client left during the handshake')))
      return undefined
    }
    const live: Live = { session, stream }
    sessions.set(session.id, live)
    send(stream, {
      handshake: {
        protocolVersion: PROTOCOL_VERSION, agentVersion: cfg.version, session: session.id, hostedBackend: cfg.hosted.name,
        info: toBackendInfo(info), systemFd: backend.systemFd, limits: toLimits(cfg.limits), maxMessageBytes: cfg.maxMessageBytes,
      },
    })
    return live
  }

  const implementation: UntypedServiceImplementation = {
    Session: (stream: Stream) => {
      const peer = stream.getPeer()
      const auth = refuseAuth(stream.metadata)
      if (auth !== undefined) {
        cfg.log(`refused ${peer}: ${auth}`)
        return fail(stream, status.UNAUTHENTICATED, auth)
      }
      let live: Live | undefined
      let greeted = false
      let halfClosed = false
      const cancels = new Map<string, Set<() => void>>()
      const helloTimer = setTimeout(() => fail(stream, status.DEADLINE_EXCEEDED, `no Hello within ${HELLO_TIMEOUT_MS} ms`), HELLO_TIMEOUT_MS)
      helloTimer.unref()
      const violation = (why: string) => {
        if (live !== undefined) void endSession(live, why, status.INVALID_ARGUMENT)
        else fail(stream, status.INVALID_ARGUMENT, why)
      }
      stream.on('data', (msg: ClientMessageMsg & { [MALFORMED]?: string }) => {
        if (msg[MALFORMED] !== undefined) return violation(`an undecodable message: ${msg[MALFORMED]}`)
        switch (msg.message) {
          case 'hello':
            if (greeted) return violation('a second Hello')
            greeted = true
            clearTimeout(helloTimer)
            hello(stream, msg.hello as HelloMsg).then((l) => {
              live = l
              if (l !== undefined && halfClosed) void endSession(l, 'the client left during the handshake')
            }, (e: unknown) => fail(stream, status.INTERNAL, `the session could not start: ${String(e)}`))
            return
          case 'call':
            if (live === undefined) return violation('a Call before the handshake')
            return dispatch(live, msg.call as CallMsg, cancels)
          case 'cancel':
            for (const f of cancels.get((msg.cancel as { id: string }).id) ?? []) f()
            return
          default:
            return violation('an empty message')
        }
      })
      // The client's half-close: it is done; free everything, then end the stream. A connection that
      // drops also ends the stream's reading side first, then cancels it: wait a moment to say which.
      stream.on('end', () => {
        halfClosed = true
        setTimeout(() => {
          if (live !== undefined) void endSession(live, stream.cancelled ? 'the client disconnected' : 'closed by the client')
          else if (!stream.destroyed) stream.end()
        }, HALF_CLOSE_GRACE_MS)
      })
      stream.on('cancelled', () => {
        clearTimeout(helloTimer)
        if (live !== undefined) void endSession(live, 'the client disconnected')
      })
      stream.on('error', () => {})
    },

    Ping: (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
      const auth = refuseAuth(call.metadata)
      if (auth !== undefined) return callback({ code: status.UNAUTHENTICATED, details: auth })
      callback(null, { agentVersion: cfg.version, protocolVersion: PROTOCOL_VERSION })
    },
  }

  // ---- the server

  const server = new Server({
    'grpc.max_receive_message_length': cfg.maxMessageBytes,
    'grpc.max_send_message_length': cfg.maxMessageBytes,
    // Find clients whose network went away: their sessions end when the pings go unanswered.
    'grpc.keepalive_time_ms': 10_000,
    'grpc.keepalive_timeout_ms': 5_000,
  })
  server.addService(forAgent(AGENT_SERVICE), implementation)
  const creds = cfg.tls === undefined
    ? ServerCredentials.createInsecure()
    : ServerCredentials.createSsl(cfg.tls.ca ?? null, [{ cert_chain: cfg.tls.cert, private_key: cfg.tls.key }], cfg.tls.ca !== undefined)
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(formatAddress(cfg.host, cfg.port), creds, (err, bound) => (err ? reject(err) : resolve(bound)))
  })

  const sweep = setInterval(() => {
    const now = Date.now()
    for (const live of sessions.values()) {
      const s = live.session
      if (s.inFlight === 0 && now - s.lastActive > cfg.idleTimeoutMs) {
        void endSession(live, `idle for ${cfg.idleTimeoutMs / 1000} s`, status.ABORTED)
      }
    }
  }, Math.min(1000, Math.max(20, cfg.idleTimeoutMs / 4)))
  sweep.unref()

  return {
    host: cfg.host,
    port,
    address: formatAddress(cfg.host, port),
    sessionCount: () => sessions.size,
    async close() {
      clearInterval(sweep)
      await Promise.all([...sessions.values()].map((live) => endSession(live, 'the agent is shutting down', status.UNAVAILABLE)))
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown()
          resolve()
        }, 2000)
        server.tryShutdown(() => {
          clearTimeout(force)
          resolve()
        })
      })
    },
  }
}

function fail(stream: Stream, code: number, details: string): void {
  if (!stream.destroyed && stream.writable) stream.emit('error', { code, details })
}

/**
 * The service as the agent serves it. Requests are decoded by a deserialiser that never throws (grpc-js
 * would answer an undecodable message with a bare INTERNAL; this way the session ends saying what was
 * wrong), and a message the agent serialised itself (to check its size) is written as it is.
 */
function forAgent(service: ServiceDefinition): ServiceDefinition {
  const methods: Record<string, MethodDefinition<unknown, unknown>> = {}
  for (const [name, m] of Object.entries(service)) {
    const decode = m.requestDeserialize
    const encode = m.responseSerialize
    methods[name] = {
      ...m,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return decode(bytes)
        } catch (e) {
          return { [MALFORMED]: e instanceof Error ? e.message : String(e) }
        }
      },
      responseSerialize: (value: unknown) => (Buffer.isBuffer(value) ? value : encode(value)),
    }
  }
  return methods
}

/** The one log line of a session. */
export function sessionLine(s: SessionSummary): string {
  const freed = Object.entries(s.freed).filter(([, n]) => n > 0).map(([k, n]) => `${n} ${k}`)
  return `session ${s.id.slice(0, 8)} ${s.peer} (${s.client}): ${s.seconds.toFixed(1)} s, ${s.calls} calls, ` +
    `freed ${freed.length === 0 ? 'nothing' : freed.join(', ')}; ${s.reason}`
}
