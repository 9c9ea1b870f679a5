// The agent over TLS, and over mutual TLS, with a throwaway CA made by openssl (skips with the reason
// where openssl is missing). A client that does not trust the agent's certificate, or that has none when
// the agent asks for one, does not get a session.

import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { afterAll, describe, expect, test } from 'vitest'

import { AgentError } from './agent-error.ts'
import { connectRemote } from './client.ts'
import { spawnAgent } from './spawn-agent.ts'

const hasOpenssl = spawnSync('openssl', ['version']).error === undefined
const dir = mkdtempSync(path.join(os.tmpdir(), 'kvmconf-tls-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const f = (name: string) => path.join(dir, name)
/** The agent listens on 127.0.0.1; the client names it `localhost`, which its certificate carries. */
const byName = (address: string) => address.replace(/^127\.0\.0\.1:/, 'localhost:')
const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], timeout: 30_000 })

let made = false

/** A CA, a server certificate for localhost and a client certificate, all signed by the CA (made once). */
function makePki(): void {
  if (made) return
  made = true
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=kvmconf test CA', '-keyout', f('ca.key'), '-out', f('ca.pem'))
  for (const [name, san] of [['server', 'DNS:localhost,IP:127.0.0.1'], ['client', 'DNS:client']] as const) {
    writeFileSync(f(`${name}.ext`), `subjectAltName=${san}\n`)
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}`, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`))
    openssl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '1',
      '-extfile', f(`${name}.ext`), '-out', f(`${name}.pem`))
  }
}

describe('TLS', () => {
  test('a client that trusts the CA gets a session; one that does not, does not', async (ctx) => {
    if (!hasOpenssl) ctx.skip('needs openssl to make a test CA')
    makePki()
    const agent = await spawnAgent({ backend: 'emulator', args: ['--tls-cert', f('server.pem'), '--tls-key', f('server.key')] })
    try {
      const kvm = await connectRemote({ address: byName(agent.address), token: agent.token, tls: { ca: readFileSync(f('ca.pem')) } })
      expect(await kvm.getApiVersion()).toBe(12)
      await kvm.close()
      const plain = await connectRemote({ address: byName(agent.address), token: agent.token, connectTimeoutMs: 3000 }).then(() => undefined, (e: unknown) => e)
      expect(AgentError.is(plain), String(plain)).toBe(true)
      const untrusted = await connectRemote({
        address: byName(agent.address), token: agent.token, connectTimeoutMs: 3000, tls: { ca: readFileSync(f('client.pem')) },
      }).then(() => undefined, (e: unknown) => e)
      expect(AgentError.is(untrusted) && untrusted.code).toBe('UNAVAILABLE')
    } finally {
      await agent.stop()
    }
  }, 60_000)

  test('mutual TLS: --tls-ca asks for a client certificate signed by that CA', async (ctx) => {
    if (!hasOpenssl) ctx.skip('needs openssl to make a test CA')
    makePki()
    const agent = await spawnAgent({
      backend: 'emulator', args: ['--tls-cert', f('server.pem'), '--tls-key', f('server.key'), '--tls-ca', f('ca.pem')],
    })
    try {
      const ca = readFileSync(f('ca.pem'))
      const kvm = await connectRemote({
        address: byName(agent.address), token: agent.token, tls: { ca, cert: readFileSync(f('client.pem')), key: readFileSync(f('client.key')) },
      })
      expect(await kvm.getApiVersion()).toBe(12)
      await kvm.close()
      const anonymous = await connectRemote({ address: byName(agent.address), token: agent.token, connectTimeoutMs: 3000, tls: { ca } })
        .then(() => undefined, (e: unknown) => e)
      expect(AgentError.is(anonymous), String(anonymous)).toBe(true)
    } finally {
      await agent.stop()
    }
  }, 60_000)
})
