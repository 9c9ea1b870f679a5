// The agent's security and isolation, against an agent in this process hosting the emulator: tokens,
// malformed and oversized messages, unknown and foreign handles, per-client limits, what a session's
// end frees, and a hung call told from a dead agent. After each refusal the agent serves the next client.

import { status } from '@grpc/grpc-js'
import { afterEach, describe, expect, test } from 'vitest'

import type { Backend, Vm } from '../../harness/backend.ts'
import { KvmError } from '../../harness/errors.ts'
import { AgentError } from './agent-error.ts'
import { connectRemote } from './client.ts'
import { HELLO, rawSession, startTestAgent, until, type TestAgent } from './spec-support.ts'

const MiB = 1 << 20
const handleOf = (o: object) => (o as { handle: string }).handle

let agents: TestAgent[] = []
afterEach(async () => {
  await Promise.all(agents.map((a) => a.stop()))
  agents = []
})

async function agentWith(opts: Parameters<typeof startTestAgent>[0] = {}): Promise<TestAgent> {
  const a = await startTestAgent(opts)
  agents.push(a)
  return a
}

async function rejection(p: Promise<unknown>): Promise<AgentError> {
  const e = await p.then(() => undefined, (err: unknown) => err)
  if (!AgentError.is(e)) throw new Error(`expected an AgentError, got ${e === undefined ? 'success' : String(e)}`)
  return e
}

/** The agent still serves: a fresh client gets through a call. */
async function servesNextClient(a: TestAgent): Promise<void> {
  const kvm = await a.connect()
  expect(await kvm.getApiVersion()).toBe(12)
  await kvm.close()
}

describe('authentication', () => {
  test('no token: UNAUTHENTICATED, and nothing runs', async () => {
    const a = await agentWith()
    const raw = rawSession(a.address, undefined)
    raw.stream.write(HELLO)
    raw.stream.write({ call: { id: '1', deadlineMs: 1000, createVm: {} } })
    const s = await raw.status
    raw.close()
    expect(s.code).toBe(status.UNAUTHENTICATED)
    expect(s.details).toMatch(/no token/)
    expect(a.hosted, 'no hosted backend was opened').toHaveLength(0)
    expect(a.log.join('\n')).toMatch(/refused .*: no token/)
    await servesNextClient(a)
  })

  test.each([
    ['a wrong token', 'not-the-token'],
    ['the token with a byte more', 'TOKEN+x'],
    ['the token less its last byte', 'TOKEN-1'],
  ])('%s: UNAUTHENTICATED, and nothing runs', async (_, given) => {
    const a = await agentWith()
    const token = given === 'TOKEN+x' ? `${a.token}x` : given === 'TOKEN-1' ? a.token.slice(0, -1) : given
    const e = await rejection(connectRemote({ address: a.address, token }))
    expect(e.code).toBe('UNAUTHENTICATED')
    expect(e.message).toMatch(/wrong token/)
    expect(a.hosted).toHaveLength(0)
    await servesNextClient(a)
  })

  test('Ping needs the token too', async () => {
    const a = await agentWith()
    const kvm = await a.connect()
    expect(await kvm.rpc.ping()).toBeGreaterThanOrEqual(0)
    const stranger = rawSession(a.address, 'nope')
    stranger.stream.write(HELLO)
    expect((await stranger.status).code).toBe(status.UNAUTHENTICATED)
    stranger.close()
    await kvm.close()
  })
})

describe('malformed and oversized messages', () => {
  test('a protocol version mismatch is refused with a clear error', async () => {
    const a = await agentWith()
    const raw = rawSession(a.address, a.token)
    raw.stream.write({ hello: { protocolVersion: 99, clientVersion: 'from the future' } })
    const s = await raw.status
    raw.close()
    expect(s.code).toBe(status.FAILED_PRECONDITION)
    expect(s.details).toMatch(/protocol version mismatch: the client speaks 99, this agent \(kvmconf test\) speaks 1/)
    expect(a.hosted).toHaveLength(0)
  })

  test('an undecodable message ends that session with INVALID_ARGUMENT, freeing it; the agent serves the next client', async () => {
    const a = await agentWith()
    const raw = rawSession(a.address, a.token)
    raw.stream.write(HELLO)
    await until(() => raw.messages.length > 0, 5000)
    raw.stream.write(Buffer.from([0x12, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]))
    const s = await raw.status
    raw.close()
    expect(s.code).toBe(status.INVALID_ARGUMENT)
    expect(s.details).toMatch(/undecodable message/)
    expect(await until(() => a.hosted[0]?.closed === true, 5000)).toBe(true)
    await servesNextClient(a)
  })

  test('a Call before the Hello, or an empty message, is a protocol violation', async () => {
    const a = await agentWith()
    for (const first of [{ call: { id: '1', deadlineMs: 100, getApiVersion: {} } }, {}]) {
      const raw = rawSession(a.address, a.token)
      raw.stream.write(first)
      const s = await raw.status
      raw.close()
      expect(s.code).toBe(status.INVALID_ARGUMENT)
    }
    await servesNextClient(a)
  })

  test('a call without a request, or missing a field, is refused alone; the session goes on', async () => {
    const a = await agentWith()
    const raw = rawSession(a.address, a.token)
    raw.stream.write(HELLO)
    await until(() => raw.messages.length > 0, 5000)
    raw.stream.write({ call: { id: '1', deadlineMs: 1000 } })
    raw.stream.write({ call: { id: '2', deadlineMs: 1000, mmap: { backing: 'anonymous' } } })
    raw.stream.write({ call: { id: '3', deadlineMs: 1000, getApiVersion: {} } })
    expect(await until(() => raw.messages.length >= 4, 5000)).toBe(true)
    const results = new Map(raw.messages.slice(1).map((m) => [m.result.id, m.result]))
    expect(results.get('1')?.refusal).toMatchObject({ code: 'INVALID_ARGUMENT', message: 'call 1: no request' })
    expect(results.get('2')?.refusal).toMatchObject({ code: 'INVALID_ARGUMENT', message: 'malformed mmap request: size: missing' })
    expect(results.get('3')?.reply).toMatchObject({ number: 12 })
    raw.stream.end()
    expect((await raw.status).code).toBe(0)
    raw.close()
  })

  test('a call over the message limit is refused before it is sent; a result over it is refused; the session goes on', async () => {
    const a = await agentWith({ maxMessageBytes: MiB })
    const kvm = await a.connect()
    const mem = await kvm.mmap({ size: 4 * MiB, backing: 'anonymous' })
    const tooBig = await rejection(mem.write(0, new Uint8Array(MiB + 1)))
    expect(tooBig.code).toBe('RESOURCE_EXHAUSTED')
    expect(tooBig.message).toMatch(/over the agent's message limit of 1048576/)
    const tooLong = await rejection(mem.read(0, 2 * MiB))
    expect(tooLong.code).toBe('RESOURCE_EXHAUSTED')
    expect(tooLong.message).toMatch(/the result is \d+ bytes, over the agent's message limit/)
    await mem.write(0, new Uint8Array(1024).fill(7))
    expect(await mem.findMismatch(0, 1024, 7)).toBe(-1n)
    await kvm.close()
  })

  test('a raw message over the limit ends that session with RESOURCE_EXHAUSTED; the agent serves the next client', async () => {
    const a = await agentWith({ maxMessageBytes: MiB })
    const raw = rawSession(a.address, a.token)
    raw.stream.write(HELLO)
    await until(() => raw.messages.length > 0, 5000)
    raw.stream.write({ call: { id: '1', deadlineMs: 1000, mappingWrite: { handle: '1', data: Buffer.alloc(2 * MiB) } } })
    const s = await raw.status
    raw.close()
    expect(s.code).toBe(status.RESOURCE_EXHAUSTED)
    expect(await until(() => a.hosted[0]?.closed === true, 5000)).toBe(true)
    await servesNextClient(a)
  })
})

describe('isolation', () => {
  test("unknown handles and another client's handles are refused (NOT_FOUND); their owner keeps them", async () => {
    const a = await agentWith()
    const alice = await a.connect()
    const bob = await a.connect()
    const vm = await alice.createVm()
    const mem = await alice.mmap({ size: MiB, backing: 'anonymous' })
    for (const handle of [handleOf(vm), '999999', '0']) {
      const e = await rejection(bob.rpc.invoke('vmCreateVcpu', { handle, value: 0 }, 'vcpu'))
      expect(e.code).toBe('NOT_FOUND')
      expect(e.message).toMatch(new RegExp(`handle ${handle} is not one of this session's`))
    }
    expect((await rejection(bob.rpc.invoke('close', { handle: handleOf(mem) }, 'done'))).code).toBe('NOT_FOUND')
    const wrongKind = await rejection(alice.rpc.invoke('vmCreateVcpu', { handle: handleOf(mem), value: 0 }, 'vcpu'))
    expect(wrongKind.code).toBe('INVALID_ARGUMENT')
    expect(wrongKind.message).toMatch(/is a mapping, not a vm/)
    expect(await vm.checkExtension(1)).toBeGreaterThanOrEqual(0)
    await mem.fill(0, 4096, 1)
    expect((await bob.usage()).used).toEqual({ vms: 0, vcpus: 0, memoryBytes: 0n, handles: 0 })
    await alice.close()
    await bob.close()
  })

  test("a closed handle answers the hosted backend's own EBADF", async () => {
    const a = await agentWith()
    const kvm = await a.connect()
    const vm = await kvm.createVm()
    await vm.close()
    const e = await vm.checkExtension(1).then(() => undefined, (err: unknown) => err)
    expect(KvmError.is(e) && e.code).toBe('EBADF')
    await kvm.close()
  })

  test('what a client made is freed when it closes, disconnects or idles, with one log line per session', async () => {
    const a = await agentWith({ idleTimeoutMs: 300 })
    const closing = await a.connect()
    await closing.createVm()
    await closing.close()
    expect(a.hosted[0]?.closed, 'close()').toBe(true)

    const raw = rawSession(a.address, a.token)
    raw.stream.write(HELLO)
    await until(() => raw.messages.length > 0, 5000)
    raw.stream.write({ call: { id: '1', deadlineMs: 1000, createVm: {} } })
    await until(() => raw.messages.length > 1, 5000)
    raw.stream.cancel()
    raw.close()
    expect(await until(() => a.hosted[1]?.closed === true, 5000), 'a disconnect').toBe(true)

    const idle = await a.connect()
    await idle.createVm()
    expect(await until(() => a.hosted[2]?.closed === true, 5000), 'the idle timeout').toBe(true)
    const e = await rejection(idle.getApiVersion())
    expect(e.code).toBe('ABORTED')
    expect(e.message).toMatch(/ended the session: idle for 0\.3 s|the session ended: idle for 0\.3 s/)

    expect(await until(() => a.log.length >= 3, 5000)).toBe(true)
    expect(a.log).toEqual([
      expect.stringMatching(/^session \w{8} .*: [\d.]+ s, 1 calls, freed 1 vm; closed by the client$/),
      // A cancelled stream may reach the agent as its half-close first: either way the session ended.
      expect.stringMatching(/^session \w{8} .*: [\d.]+ s, 1 calls, freed 1 vm; (the client disconnected|closed by the client)$/),
      expect.stringMatching(/^session \w{8} .*: [\d.]+ s, 1 calls, freed 1 vm; idle for 0.3 s$/),
    ])
  })
})

describe('per-client limits', () => {
  const limits = { vms: 2, vcpus: 2, memoryBytes: BigInt(8 * MiB), handles: 6 }
  const calls = (a: TestAgent, name: string) => a.hosted[0]?.calls.filter((c) => c === name).length

  test('VMs, vCPUs, memory and handles past the limit: RESOURCE_EXHAUSTED, refused before anything is made', async () => {
    const a = await agentWith({ limits })
    const kvm = await a.connect()
    const vms: Vm[] = [await kvm.createVm(), await kvm.createVm()]
    const moreVms = await rejection(kvm.createVm())
    expect(moreVms).toMatchObject({ code: 'RESOURCE_EXHAUSTED', op: 'createVm' })
    expect(moreVms.message).toMatch(/VMs: 2 of 2 in use/)
    expect(calls(a, 'createVm'), 'the hosted createVm ran twice only').toBe(2)

    const vm = vms[0] as Vm
    await vm.createVcpu(0)
    await vm.createVcpu(1)
    expect((await rejection(vm.createVcpu(2))).message).toMatch(/vCPUs: 2 of 2 in use/)

    const mem = await kvm.mmap({ size: 5 * MiB, backing: 'shmem' })
    expect((await rejection(kvm.mmap({ size: 4 * MiB, backing: 'anonymous' }))).message).toMatch(/memory: 5242880 of 8388608 bytes mapped/)
    expect((await rejection(mem.alias())).code).toBe('RESOURCE_EXHAUSTED')
    expect(calls(a, 'mmap')).toBe(1)

    await kvm.createUserfaultBitmap(64)
    expect((await rejection(kvm.createUserfaultBitmap(64))).message).toMatch(/open handles: 6 of 6 in use/)
    expect((await kvm.usage()).used).toEqual({ vms: 2, vcpus: 2, memoryBytes: BigInt(5 * MiB + 8), handles: 6 })

    // Closing the VM closes its vCPUs: both limits have room again, nothing leaked from the refusals.
    await vm.close()
    expect((await kvm.usage()).used).toEqual({ vms: 1, vcpus: 0, memoryBytes: BigInt(5 * MiB + 8), handles: 3 })
    const again = await kvm.createVm()
    await again.createVcpu(0)
    await kvm.close()
  })

  test('a failed create gives its reservation back', async () => {
    const a = await agentWith({ limits })
    const kvm = await a.connect()
    const e = await kvm.createVm({ type: 0xffff }).then(() => undefined, (err: unknown) => err)
    expect(KvmError.is(e)).toBe(true)
    expect((await kvm.usage()).used).toEqual({ vms: 0, vcpus: 0, memoryBytes: 0n, handles: 0 })
    await kvm.close()
  })
})

describe('a hung call and a dead agent', () => {
  const HANG_CAP = 0xdead
  const hangOn = (b: Backend): Backend => new Proxy(b, {
    get(target, prop, receiver) {
      if (prop === 'checkExtension') {
        return (cap: number) => (cap === HANG_CAP ? new Promise(() => {}) : target.checkExtension(cap))
      }
      return Reflect.get(target, prop, receiver)
    },
  })

  test('a hung call fails within its deadline as DEADLINE_EXCEEDED, with the agent alive (it answers ping)', async () => {
    const a = await agentWith({ wrap: hangOn })
    const kvm = await a.connect({ deadlineMs: 800 })
    const start = Date.now()
    const e = await rejection(kvm.checkExtension(HANG_CAP))
    const took = Date.now() - start
    expect(e).toMatchObject({ code: 'DEADLINE_EXCEEDED', agent: 'alive', op: 'checkExtension' })
    expect(e.message).toMatch(/no answer within 600 ms, but the agent at .* answers ping \([\d.]+ ms\): the call is hung on the agent/)
    expect(took, 'reported within the deadline').toBeLessThan(800 + 100)
    expect(await kvm.checkExtension(1)).toBeGreaterThanOrEqual(0)
    await kvm.close()
  })

  test('no agent at the address: UNAVAILABLE at once', async () => {
    const a = await agentWith()
    const address = a.address
    await a.stop()
    agents = []
    const start = Date.now()
    const e = await rejection(connectRemote({ address, token: a.token, connectTimeoutMs: 5000 }))
    expect(e).toMatchObject({ code: 'UNAVAILABLE', agent: 'dead' })
    expect(e.message).toMatch(/unreachable/)
    expect(Date.now() - start).toBeLessThan(5000)
  })
})
