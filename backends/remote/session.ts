// What one client owns on the agent: its own instance of the hosted backend, the handles it was given,
// what they cost against its limits, and the end that frees all of it.
//
// Each session opens its own hosted backend (its own /dev/kvm fd, or its own emulator), so a session's
// end is the backend's close(): every VM, vCPU, fd and mapping the client made goes with it, whatever
// the client left open. Handles are ids in this session's table; another session's id is not in it and
// is refused as unknown. A closed handle stays in the table (up to TOMBSTONES of them) so that a call on
// it reaches the hosted object and gets that backend's own EBADF, as a closed fd would.

import { KernelLogWatcher } from '../../harness/kernel-log.ts'
import type { Backend, Vcpu } from '../../harness/backend.ts'
import { KvmError } from '../../harness/errors.ts'
import type { AgentStatus } from './agent-error.ts'
import { setTimeout as sleep } from 'node:timers/promises'

/** Per-client limits, set by the agent's flags. */
export interface Limits {
  vms: number
  vcpus: number
  /** Host mappings, guest_memfd files and userfault bitmaps, in bytes. */
  memoryBytes: bigint
  handles: number
}

export const DEFAULT_LIMITS: Limits = { vms: 64, vcpus: 256, memoryBytes: 256n << 30n, handles: 4096 }

export type HandleKind = 'vm' | 'vcpu' | 'guest_memfd' | 'mapping' | 'bitmap' | 'uffd'

/** What creating one object takes from the limits. */
export interface Cost {
  vms?: number
  vcpus?: number
  memoryBytes?: bigint
}

interface Closable {
  close(): Promise<void>
}

interface Entry {
  kind: HandleKind
  object: Closable
  cost: Required<Cost> & { handles: number }
  open: boolean
  /** The VM a vCPU belongs to: closing the VM closes its vCPUs. */
  vm?: string
}

/** A refusal by the agent itself, answered as a gRPC status rather than a Reply. */
export class AgentRefusal extends Error {
  constructor(readonly status: AgentStatus, message: string) {
    super(message)
  }
}

/** Closed handles kept so that calls on them reach the hosted object (and its EBADF). */
const TOMBSTONES = 4096
/** How long the end of a session waits for calls in flight after kicking the vCPUs. */
const DRAIN_MS = 3000
/** How long the hosted backend's close() may take before the session gives up waiting on it. */
const CLOSE_MS = 10_000

export interface SessionSummary {
  id: string
  peer: string
  client: string
  seconds: number
  calls: number
  /** What was still open when the session ended, and so freed by it. */
  freed: Record<HandleKind, number>
  reason: string
}

export class Session {
  readonly startedAt = Date.now()
  lastActive = Date.now()
  inFlight = 0
  calls = 0
  readonly used: Limits = { vms: 0, vcpus: 0, memoryBytes: 0n, handles: 0 }
  private readonly entries = new Map<string, Entry>()
  private readonly tombstones: string[] = []
  private ending: Promise<SessionSummary> | undefined

  constructor(
    readonly id: string,
    readonly peer: string,
    readonly client: string,
    readonly backend: Backend,
    readonly limits: Limits,
    private readonly nextHandle: () => string,
    /** The agent serves its machine's kernel log (--kmsg): this session's watcher, opened on first use. */
    private readonly servesKernelLog = false,
  ) {}

  private watcher: KernelLogWatcher | undefined

  /**
   * The kernel-log watcher of this session (`kvmconf run --kmsg` over remote), or a plain Error saying
   * the agent was not started with --kmsg, which travels back to the client as is.
   */
  kernelLog(): KernelLogWatcher {
    if (!this.servesKernelLog) {
      throw new Error('this agent does not serve its kernel log: start it with `kvmconf agent --kmsg` to use `kvmconf run --kmsg` over remote')
    }
    this.watcher ??= new KernelLogWatcher()
    return this.watcher
  }

  /** Why the session ended, once it has. */
  endReason: string | undefined

  get ended(): boolean {
    return this.ending !== undefined
  }

  /** Runs one call of this session, counting it in flight so that idleness and the end can see it. */
  async track<T>(body: () => Promise<T>): Promise<T> {
    this.inFlight++
    this.calls++
    this.lastActive = Date.now()
    try {
      return await body()
    } finally {
      this.inFlight--
      this.lastActive = Date.now()
    }
  }

  /** The object behind `handle`, which must be one of this session's and of `kind`. */
  get<T>(handle: string, kind: HandleKind): T {
    const entry = this.entries.get(handle)
    if (entry === undefined) throw new AgentRefusal('NOT_FOUND', `handle ${handle} is not one of this session's`)
    if (entry.kind !== kind) throw new AgentRefusal('INVALID_ARGUMENT', `handle ${handle} is a ${entry.kind}, not a ${kind}`)
    return entry.object as T
  }

  /**
   * Creates an object within the limits: refuses with RESOURCE_EXHAUSTED before `create` runs when its
   * cost would pass one, so nothing is half-created; the cost is held while `create` runs, so that calls
   * racing each other cannot pass a limit together.
   */
  async create<T extends Closable>(kind: HandleKind, cost: Cost, create: () => Promise<T>, vm?: string): Promise<{ handle: string; object: T }> {
    const c = this.reserve(cost, 1)
    let object: T
    try {
      object = await create()
    } catch (e) {
      this.charge(c, -1)
      throw e
    }
    if (this.ended) {
      // The client went away while the object was being made: the backend's close() may have run already.
      this.charge(c, -1)
      await object.close().catch(() => {})
      throw new AgentRefusal('ABORTED', 'the session ended while the object was being created')
    }
    const handle = this.nextHandle()
    this.entries.set(handle, { kind, object, cost: c, open: true, ...(vm === undefined ? {} : { vm }) })
    return { handle, object }
  }

  /** Runs a workload that makes and frees its own objects (runDemandPaging), its cost held while it runs. */
  async within<T>(cost: Cost, body: () => Promise<T>): Promise<T> {
    const c = this.reserve(cost, 0)
    try {
      return await body()
    } finally {
      this.charge(c, -1)
    }
  }

  /** close() of a handle: on success (or EBADF, closed already) it stops counting against the limits. */
  async close(handle: string): Promise<void> {
    const entry = this.entries.get(handle)
    if (entry === undefined) throw new AgentRefusal('NOT_FOUND', `handle ${handle} is not one of this session's`)
    try {
      await entry.object.close()
    } catch (e) {
      if (entry.open && KvmError.is(e) && e.code === 'EBADF') this.retire(handle, entry)
      throw e
    }
    this.retire(handle, entry)
    // KVM closes a VM's vCPUs with it (kvm_vm_release() drops the vCPU references).
    if (entry.kind === 'vm') {
      for (const [h, e] of this.entries) if (e.vm === handle) this.retire(h, e)
    }
  }

  /** Usage, for the Usage call and the limits' messages. */
  usage(): Limits {
    return { ...this.used }
  }

  /**
   * Ends the session once: kicks every vCPU (a KVM_RUN must not outlive its client), lets the calls in
   * flight settle, then closes the hosted backend, which frees everything still open.
   */
  end(reason: string): Promise<SessionSummary> {
    this.endReason ??= reason
    this.ending ??= this.finish(reason)
    return this.ending
  }

  private async finish(reason: string): Promise<SessionSummary> {
    const freed: Record<HandleKind, number> = { vm: 0, vcpu: 0, guest_memfd: 0, mapping: 0, bitmap: 0, uffd: 0 }
    for (const entry of this.entries.values()) {
      if (!entry.open) continue
      freed[entry.kind]++
      if (entry.kind === 'vcpu') await (entry.object as unknown as Vcpu).kick().catch(() => {})
    }
    const drainUntil = Date.now() + DRAIN_MS
    while (this.inFlight > 0 && Date.now() < drainUntil) await sleep(10)
    let outcome = reason
    const closed = await withTimeout(this.backend.close().then(() => true, () => true), CLOSE_MS)
    if (!closed) outcome += `; the hosted backend's close() did not finish within ${CLOSE_MS} ms`
    this.entries.clear()
    this.tombstones.length = 0
    this.watcher?.close()
    return {
      id: this.id, peer: this.peer, client: this.client, seconds: (Date.now() - this.startedAt) / 1000,
      calls: this.calls, freed, reason: outcome,
    }
  }

  private retire(handle: string, entry: Entry): void {
    if (!entry.open) return
    entry.open = false
    this.charge(entry.cost, -1)
    this.tombstones.push(handle)
    while (this.tombstones.length > TOMBSTONES) this.entries.delete(this.tombstones.shift() as string)
  }

  /** Charges `cost` (and `handles` handles), or refuses with RESOURCE_EXHAUSTED when a limit would pass. */
  private reserve(cost: Cost, handles: 0 | 1): Required<Cost> & { handles: number } {
    const c = { vms: cost.vms ?? 0, vcpus: cost.vcpus ?? 0, memoryBytes: cost.memoryBytes ?? 0n, handles }
    const refusal = this.overLimit(c)
    if (refusal !== undefined) throw new AgentRefusal('RESOURCE_EXHAUSTED', refusal)
    this.charge(c, 1)
    return c
  }

  private charge(c: Required<Cost> & { handles: number }, sign: 1 | -1): void {
    this.used.vms += sign * c.vms
    this.used.vcpus += sign * c.vcpus
    this.used.memoryBytes += BigInt(sign) * c.memoryBytes
    this.used.handles += sign * c.handles
  }

  private overLimit(c: Required<Cost> & { handles: number }): string | undefined {
    const { used, limits } = this
    if (used.handles + c.handles > limits.handles) return `open handles: ${used.handles} of ${limits.handles} in use`
    if (used.vms + c.vms > limits.vms) return `VMs: ${used.vms} of ${limits.vms} in use`
    if (used.vcpus + c.vcpus > limits.vcpus) return `vCPUs: ${used.vcpus} of ${limits.vcpus} in use`
    if (used.memoryBytes + c.memoryBytes > limits.memoryBytes) {
      return `memory: ${used.memoryBytes} of ${limits.memoryBytes} bytes mapped, ${c.memoryBytes} more asked`
    }
    return undefined
  }
}

/** Whether `p` settled within `ms`. */
async function withTimeout(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms)
  })
  try {
    return await Promise.race([p.then(() => true), late])
  } finally {
    clearTimeout(timer)
  }
}
