// npm run bench:remote: the whole conformance suite on one backend, directly and through `kvmconf agent`
// on loopback (the remote vitest project, whose globalSetup starts the agent hosting the same backend),
// in the same run; prints both wall times, their ratio (target: at most 2x), and whether every test had
// the same outcome both ways. Then the demand-paging workload, which runs whole on the agent, both ways.
// A benchmark, not a test: it asserts nothing but the outcomes matching (exit 1 when they do not).
//
//   npm run bench:remote [-- --rounds N]       KVMCONF_AGENT_BACKEND=emulator to bench the emulator

import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

import type { Backend } from '../../harness/backend.ts'
import { median } from '../../harness/bench/result.ts'
import type { DemandPagingConfig } from '../../harness/demand-paging-types.ts'
import { runDemandPaging } from '../../harness/kvm-util/demand-paging.ts'
import { loadBackend } from '../index.ts'
import { connectRemote } from './client.ts'
import { hostableBackend, spawnAgent } from './spawn-agent.ts'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const VITEST = path.join(ROOT, 'node_modules/vitest/vitest.mjs')

interface SuiteRun {
  wallMs: number
  /** The tests' own durations added up. */
  testMs: number
  outcomes: Map<string, string>
}

/** One vitest run of suites/ in `project`, timed from spawn to exit. */
async function runSuites(project: string, hosted: string, dir: string): Promise<SuiteRun> {
  const out = path.join(dir, `${project}-${Date.now()}.json`)
  const env: NodeJS.ProcessEnv = { ...process.env, KVMCONF_AGENT_BACKEND: hosted }
  delete env.KVMCONF_BACKEND
  delete env.KVMCONF_AGENT
  const start = performance.now()
  const code = await new Promise<number | null>((resolve) => {
    const child = spawn(process.execPath, [VITEST, 'run', '--project', project, '--reporter', 'json', '--outputFile', out, 'suites/'],
      { cwd: ROOT, env, stdio: ['ignore', 'ignore', 'inherit'] })
    const timer = setTimeout(() => child.kill('SIGKILL'), 15 * 60_000)
    child.on('exit', (c) => {
      clearTimeout(timer)
      resolve(c)
    })
  })
  const wallMs = performance.now() - start
  const report = JSON.parse(await readFile(out, 'utf8')) as {
    testResults: { assertionResults: { fullName: string; status: string; duration?: number | null }[] }[]
  }
  const outcomes = new Map<string, string>()
  let testMs = 0
  for (const file of report.testResults) {
    for (const t of file.assertionResults) {
      outcomes.set(t.fullName, t.status)
      testMs += t.duration ?? 0
    }
  }
  if (code !== 0) process.stderr.write(`bench:remote: vitest --project ${project} exited ${code}\n`)
  return { wallMs, testMs, outcomes }
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`

function summary(outcomes: Map<string, string>): string {
  const counts = new Map<string, number>()
  for (const s of outcomes.values()) counts.set(s, (counts.get(s) ?? 0) + 1)
  return [...counts].map(([s, n]) => `${n} ${s}`).join(', ')
}

/**
 * The demand-paging rate `kvm` reports (pages/s, measured where the workload runs: on the agent for
 * the remote backend), one sample per run.
 */
async function demandPagingRates(kvm: Backend, config: DemandPagingConfig, runs: number): Promise<number[]> {
  const rates: number[] = []
  for (let i = 0; i < runs; i++) rates.push((await runDemandPaging(kvm, config)).overallRate)
  return rates
}

async function benchDemandPaging(hosted: 'native' | 'emulator'): Promise<string> {
  const direct = await loadBackend(hosted)
  if (!direct.available) return `not run: ${direct.reason}`
  try {
    if (!(await direct.backend.info()).features.includes('demand-paging')) {
      return `not run: the ${hosted} backend has no runDemandPaging yet (info().features lacks 'demand-paging')`
    }
    const agent = await spawnAgent({ backend: hosted })
    try {
      const remote = await connectRemote({ address: agent.address, token: agent.token })
      // 20,480 pages per vCPU, both sides pinned alike (as npm run bench does): on 2 CPUs thread
      // placement alone moves the rate several times over.
      const config: DemandPagingConfig = {
        vcpus: 2, vcpuMemoryBytes: 80n << 20n, uffdMode: 'MISSING', pinning: { vcpus: [0, 1], main: 0 }, timeoutMs: 120_000,
      }
      await demandPagingRates(direct.backend, config, 1) // warm-up
      // Interleaved, so a noisy neighbour hits both sides alike.
      const d: number[] = []
      const r: number[] = []
      for (let i = 0; i < 7; i++) {
        d.push(...(await demandPagingRates(direct.backend, config, 1)))
        r.push(...(await demandPagingRates(remote, config, 1)))
      }
      await remote.close()
      const ratio = median(r) / median(d)
      return `-v 2 -b 80M -u MISSING -c 0,1,0, median of 7: direct ${median(d).toFixed(0)} pgs/sec, ` +
        `through the agent ${median(r).toFixed(0)} pgs/sec: ratio ${ratio.toFixed(2)} (target >= 0.95)`
    } finally {
      await agent.stop()
    }
  } finally {
    await direct.backend.close()
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({ args: process.argv.slice(2), options: { rounds: { type: 'string', default: '1' } } })
  const rounds = Math.max(1, Math.min(10, Number(values.rounds) || 1))
  const hosted = await hostableBackend()
  const dir = await mkdtemp(path.join(os.tmpdir(), 'kvmconf-bench-'))
  process.stdout.write(`bench:remote: the conformance suites on ${hosted}, directly and through kvmconf agent on loopback, ${rounds} round(s)\n`)
  try {
    const direct: SuiteRun[] = []
    const remote: SuiteRun[] = []
    for (let i = 0; i < rounds; i++) {
      direct.push(await runSuites(hosted, hosted, dir))
      remote.push(await runSuites('remote', hosted, dir))
    }
    const d = median(direct.map((r) => r.wallMs))
    const r = median(remote.map((x) => x.wallMs))
    const last = (runs: SuiteRun[]) => runs[runs.length - 1] as SuiteRun
    process.stdout.write(`  direct (${hosted}):           wall ${seconds(d)} (tests ${seconds(median(direct.map((x) => x.testMs)))}): ${summary(last(direct).outcomes)}\n`)
    process.stdout.write(`  remote (agent on ${hosted}): wall ${seconds(r)} (tests ${seconds(median(remote.map((x) => x.testMs)))}): ${summary(last(remote).outcomes)}\n`)
    process.stdout.write(`  wall-time ratio remote/direct: ${(r / d).toFixed(2)}x (target <= 2x)\n`)

    const a = last(direct).outcomes
    const b = last(remote).outcomes
    const names = [...new Set([...a.keys(), ...b.keys()])].sort()
    const differ = names.filter((n) => a.get(n) !== b.get(n))
    if (differ.length === 0) process.stdout.write(`  test for test: the same outcome for all ${names.length} tests\n`)
    for (const n of differ) process.stdout.write(`  DIFFERS: ${n}: direct ${a.get(n) ?? 'absent'}, remote ${b.get(n) ?? 'absent'}\n`)

    process.stdout.write(`  demand paging: ${await benchDemandPaging(hosted)}\n`)
    return differ.length === 0 ? 0 : 1
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

process.exitCode = await main()
