// What the remote backend throws when the failure is the agent's or the network's, not the kernel's:
// the agent refused the call (a limit, a foreign handle, a bad token), or it could not be reached.
//
// `code` is the gRPC status name. For a call that did not answer in time, `agent` says what the ping
// that followed found (kirk's rule, libkirk/scheduler.py): 'alive' means the agent answers and this call
// is hung; 'dead' means the agent itself is gone or unreachable. Recognise it with AgentError.is(), as
// harness/errors.ts's guards, since it may cross a worker boundary.

const AGENT_ERROR = 'AgentError'

export type AgentStatus =
  | 'UNAUTHENTICATED' | 'INVALID_ARGUMENT' | 'NOT_FOUND' | 'FAILED_PRECONDITION' | 'RESOURCE_EXHAUSTED'
  | 'ABORTED' | 'UNAVAILABLE' | 'DEADLINE_EXCEEDED' | 'CANCELLED' | 'INTERNAL' | 'UNIMPLEMENTED' | 'UNKNOWN'

export class AgentError extends Error {
  override readonly name = AGENT_ERROR
  readonly code: AgentStatus
  /** The RPC that failed (`VmCreateVcpu`), or `Open` for the handshake. */
  readonly op: string
  /** After a timeout or a lost connection: whether the agent still answered a ping. */
  readonly agent: 'alive' | 'dead' | 'unknown'

  constructor(code: AgentStatus, op: string, message: string, agent: 'alive' | 'dead' | 'unknown' = 'unknown') {
    super(`${op}: ${message}`)
    this.code = code
    this.op = op
    this.agent = agent
  }

  static is(e: unknown): e is AgentError {
    return typeof e === 'object' && e !== null && (e as { name?: unknown }).name === AGENT_ERROR
  }
}
