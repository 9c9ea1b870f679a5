// The self-tests' way to run the real `kvmconf` bin, as a user or CI would.

import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const bin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), 'kvmconf.mjs')

export interface Spawned {
  status: number | null
  stdout: string
  stderr: string
}

export function kvmconf(args: readonly string[], opts: { cwd?: string; timeoutMs?: number } = {}): Spawned {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: opts.timeoutMs ?? 120_000, cwd: opts.cwd, maxBuffer: 64 << 20 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}
