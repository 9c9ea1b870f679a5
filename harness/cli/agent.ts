// kvmconf agent: serve a local backend to remote clients (backends/remote/agent.ts) until SIGTERM/SIGINT.
//
// Prints the bound address alone on the first line of stdout (so a parent that asked for port 0 can read
// it), then one line per client session on stderr.

import { kernelLogProblem } from '../kernel-log.ts'
import { readFileSync, statSync } from 'node:fs'
import { isIP } from 'node:net'
import { parseArgs } from 'node:util'

import { EXIT_FAIL, EXIT_OK, UsageError, oneOf, wholeNumber, withUsage } from './usage.ts'

const HOSTABLE = ['native', 'emulator'] as const

const HELP = `Usage: kvmconf agent --token-file F [options]

Hosts a local backend for remote clients (\`--backend remote\`, or KVMCONF_AGENT=HOST:PORT with
KVMCONF_TOKEN_FILE=F). Each client session gets its own instance of the backend; everything a client
created is freed when it disconnects, closes, or stays idle past --idle-timeout.

Options:
  --listen HOST:PORT   where to listen (default 127.0.0.1:7420; port 0 picks a free port). The bound
                       address is printed alone on stdout's first line.
  --backend NAME       ${HOSTABLE.join(' | ')} (default: native)
  --profile NAME       the emulator's kernel profile
  --token-file F       the token clients must present (required; compared in constant time)
  --tls-cert F         TLS certificate chain (PEM); with --tls-key
  --tls-key F          TLS private key (PEM)
  --tls-ca F           require client certificates signed by this CA (mutual TLS)
  --insecure           allow a non-loopback --listen without TLS (the token then travels in clear)
  --idle-timeout S     end a session after S seconds without a call (default 300)
  --max-vms N          per-client limits, refused with RESOURCE_EXHAUSTED (default 64)
  --max-vcpus N        (default 256)
  --max-memory SIZE    bytes of host mappings, guest_memfd files and bitmaps, K/M/G/T suffixes (default 256G)
  --max-handles N      open handles of every kind (default 4096)
  --max-sessions N     clients at once (default 64)
  --max-message SIZE   the largest message accepted or sent (default 16M)
  --kmsg               serve this machine's kernel log, so that \`kvmconf run --kmsg\` works over remote:
                       markers in /dev/kmsg around each client test, the lines between sent back (needs
                       read and write access to /dev/kmsg and read access to /proc/sys/kernel/tainted)
  -h, --help           this text
`

/** HOST:PORT or [IPV6]:PORT. */
export function parseListen(s: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(s)
  const port = m ? Number(m[3]) : NaN
  if (!m || port > 65535) throw new UsageError(`--listen ${s}: expected HOST:PORT (port 0 for a free one)`)
  return { host: (m[1] ?? m[2]) as string, port }
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true
  const v4 = host.startsWith('::ffff:') ? host.slice(7) : host
  return isIP(v4) === 4 && v4.startsWith('127.')
}

const SIZE_UNITS: Record<string, bigint> = { '': 1n, K: 1n << 10n, M: 1n << 20n, G: 1n << 30n, T: 1n << 40n }

export function parseSize(option: string, s: string): bigint {
  const m = /^(\d+)([KMGT]?)$/i.exec(s)
  if (!m) throw new UsageError(`--${option} ${s}: expected a byte count, K/M/G/T suffixes allowed`)
  return BigInt(m[1] as string) * (SIZE_UNITS[(m[2] as string).toUpperCase()] as bigint)
}

function count(option: string, s: string | undefined, fallback: number): number {
  return s === undefined ? fallback : wholeNumber(`--${option}`, s, 1, 'a positive integer')
}

function readFile(option: string, file: string): Buffer {
  try {
    return readFileSync(file)
  } catch (e) {
    throw new UsageError(`--${option} ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`)
  }
}

async function agent(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      listen: { type: 'string', default: '127.0.0.1:7420' },
      backend: { type: 'string', default: 'native' },
      profile: { type: 'string' },
      'token-file': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'tls-ca': { type: 'string' },
      insecure: { type: 'boolean' },
      'idle-timeout': { type: 'string' },
      'max-vms': { type: 'string' },
      'max-vcpus': { type: 'string' },
      'max-memory': { type: 'string' },
      'max-handles': { type: 'string' },
      'max-sessions': { type: 'string' },
      'max-message': { type: 'string' },
      kmsg: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help) {
    process.stdout.write(HELP)
    return EXIT_OK
  }
  const backend = oneOf('backend', values.backend, HOSTABLE)
  if (values.profile !== undefined && backend !== 'emulator') throw new UsageError('--profile applies to the emulator backend only')
  const { host, port } = parseListen(values.listen)
  const tokenFile = values['token-file']
  if (tokenFile === undefined) throw new UsageError('--token-file is required: the agent serves no one without a token')
  const token = readFile('token-file', tokenFile).toString('utf8').trim()
  if (token === '') throw new UsageError(`--token-file ${tokenFile}: the file is empty`)
  if ((values['tls-cert'] === undefined) !== (values['tls-key'] === undefined)) throw new UsageError('--tls-cert and --tls-key go together')
  if (values['tls-ca'] !== undefined && values['tls-cert'] === undefined) throw new UsageError('--tls-ca needs --tls-cert and --tls-key')
  const tls = values['tls-cert'] === undefined ? undefined : {
    cert: readFile('tls-cert', values['tls-cert']),
    key: readFile('tls-key', values['tls-key'] as string),
    ca: values['tls-ca'] === undefined ? undefined : readFile('tls-ca', values['tls-ca']),
  }
  if (!isLoopback(host) && tls === undefined && !values.insecure) {
    throw new UsageError(`--listen ${values.listen} is not a loopback address: give --tls-cert and --tls-key, or --insecure to serve without TLS`)
  }
  const idleSeconds = count('idle-timeout', values['idle-timeout'], 300)
  const { DEFAULT_LIMITS } = await import('../../backends/remote/session.ts')
  const limits = {
    vms: count('max-vms', values['max-vms'], DEFAULT_LIMITS.vms),
    vcpus: count('max-vcpus', values['max-vcpus'], DEFAULT_LIMITS.vcpus),
    memoryBytes: values['max-memory'] === undefined ? DEFAULT_LIMITS.memoryBytes : parseSize('max-memory', values['max-memory']),
    handles: count('max-handles', values['max-handles'], DEFAULT_LIMITS.handles),
  }
  const { DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_SESSIONS, startAgent } = await import('../../backends/remote/agent.ts')
  const maxMessage = values['max-message'] === undefined ? BigInt(DEFAULT_MAX_MESSAGE_BYTES) : parseSize('max-message', values['max-message'])
  if (maxMessage < 1024n || maxMessage > 1n << 30n) throw new UsageError(`--max-message ${values['max-message']}: between 1K and 1G`)

  const log = (line: string) => process.stderr.write(`kvmconf agent: ${line}\n`)
  // A daemon serving many clients: a bug met by one client's call is logged, and the others go on.
  process.on('unhandledRejection', (e) => log(`internal error: ${e instanceof Error ? e.stack : String(e)}`))
  if ((statSync(tokenFile).mode & 0o077) !== 0) log(`warning: ${tokenFile} is readable by other users than its owner`)

  // The hosted backend must work here before any client is promised it.
  const { loadBackend } = await import('../../backends/index.ts')
  const open = () => loadBackend(backend, { profile: values.profile })
  if (values.kmsg) {
    const problem = kernelLogProblem()
    if (problem !== undefined) throw new UsageError(`--kmsg: ${problem}`)
  }
  const probe = await open()
  if (!probe.available) {
    process.stderr.write(`kvmconf agent: the ${backend} backend is not available here: ${probe.reason}\n`)
    return EXIT_FAIL
  }
  const info = await probe.backend.info()
  await probe.backend.close()

  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  const running = await startAgent({
    host, port, token, tls, limits, log,
    hosted: { name: backend, open },
    idleTimeoutMs: idleSeconds * 1000,
    maxMessageBytes: Number(maxMessage),
    maxSessions: count('max-sessions', values['max-sessions'], DEFAULT_MAX_SESSIONS),
    kernelLog: values.kmsg === true,
    version: pkg.version,
  })
  process.stdout.write(`${running.address}\n`)
  log(`hosting ${backend} (${info.kernelRelease}, ${info.arch}) on ${running.address}, TLS ${tls === undefined ? 'off' : tls.ca ? 'mutual' : 'on'}, ` +
    `idle timeout ${idleSeconds} s, kernel log ${values.kmsg ? 'served' : 'not served'}, per client ${limits.vms} VMs, ${limits.vcpus} vCPUs, ${limits.memoryBytes} bytes, ${limits.handles} handles`)

  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log(`${signal}: ending ${running.sessionCount()} session(s)`)
      void running.close().then(resolve)
    }
    process.once('SIGTERM', () => stop('SIGTERM'))
    process.once('SIGINT', () => stop('SIGINT'))
  })
  return EXIT_OK
}

export const agentVerb = { summary: 'serve a local backend to remote clients', run: (argv: string[]) => withUsage('agent', () => agent(argv)) }
