// npm run bench: kvmconf's native demand paging against the project's own C reference on this kernel.
//
// The reference (demand-paging-ref.c, beside this file) is built with `cc -O2` into a temporary directory
// and run in the same benchmark run, interleaved with the native backend's runDemandPaging, so that both
// see the same machine state. Each case is 1 and 2 vCPUs × MISSING (anonymous) and MINOR (shmem),
// 20,480 pages per vCPU, one userfaultfd per vCPU with one reader. Each repetition runs both sides back
// to back (alternating which goes first) and gives one paired ratio native/C; the reported ratio is the
// median of the paired ratios, with their spread (min-max), so that the host's drift from one second to
// the next (its fault rate can halve for a while) cancels within a pair. The floor is 0.9. The emulator
// runs the same cases after them and must reach 10x the native median of the same run. Exit 1 when any
// case is below its floor.
//
// Both sides pin their threads the same way, with demand_paging_test's -c (one pCPU per vCPU, then the
// main thread's, which the userfaultfd readers created after it inherit). On this 2-CPU host the rate
// depends mostly on where the scheduler puts each vCPU and the reader that resolves its faults (a vCPU
// sharing a pCPU with its reader runs 4-5x as fast as one whose every fault crosses to the other pCPU),
// so unpinned rates are bimodal for the C program and kvmconf alike, and a median of a few runs compares
// placements, not implementations. 1 vCPU: -c 0,0 (vCPU and reader on pCPU 0); 2 vCPUs: -c 0,1,0 (a
// vCPU per pCPU, both readers on pCPU 0: one local, one remote). `--unpinned` adds the unpinned
// comparison (reported, not held to the floor).
//
// Usage: npm run bench [-- --reps N] [-- --pages N] [-- --unpinned]

import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

import type { Backend } from '../../../harness/backend.ts'
import { median } from '../../../harness/bench/result.ts'
import type { UffdMode } from '../../../harness/demand-paging-types.ts'
import { loadBackend } from '../../index.ts'

const FLOOR = 0.9
/** The emulator's target: at least this many times the native rate, for the same configuration. */
const EMULATOR_TARGET = 10

interface Case {
  mode: UffdMode
  vcpus: number
}

const CASES: Case[] = [
  { mode: 'MISSING', vcpus: 1 },
  { mode: 'MISSING', vcpus: 2 },
  { mode: 'MINOR', vcpus: 1 },
  { mode: 'MINOR', vcpus: 2 },
]

const fmt = (n: number) => Math.round(n).toLocaleString('en-US')

function buildReference(dir: string): string {
  const source = path.join(path.dirname(fileURLToPath(import.meta.url)), 'demand-paging-ref.c')
  const exe = path.join(dir, 'demand-paging-ref')
  const r = spawnSync('cc', ['-O2', '-pthread', '-o', exe, source], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`cc -O2 ${source} failed: ${r.error?.message ?? r.stderr}`)
  return exe
}

/** The bench's placement (see the header), as -c's list: one pCPU per vCPU, then the main thread's. */
function pinning(c: Case, pinned: boolean): number[] | null {
  if (!pinned) return null
  return [...Array.from({ length: c.vcpus }, (_, i) => i % os.availableParallelism()), 0]
}

function runReference(exe: string, c: Case, pages: number, pinned: boolean): number {
  const pin = pinning(c, pinned)
  const args = ['-v', String(c.vcpus), '-p', String(pages), '-u', c.mode, ...(pin ? ['-c', pin.join(',')] : [])]
  const r = spawnSync(exe, args, { encoding: 'utf8', timeout: 120_000 })
  if (r.status !== 0) throw new Error(`${exe}: ${r.stderr || r.error?.message || `exit ${r.status}`}`)
  return (JSON.parse(r.stdout) as { overall_rate: number }).overall_rate
}

async function runBackend(kvm: Backend, c: Case, pages: number, pinned: boolean): Promise<number> {
  const pin = pinning(c, pinned)
  const r = await kvm.runDemandPaging!({
    vcpus: c.vcpus, vcpuMemoryBytes: BigInt(pages) * 4096n, uffdMode: c.mode,
    pinning: pin ? { vcpus: pin.slice(0, c.vcpus), main: pin[c.vcpus] } : null,
    backing: c.mode === 'MINOR' ? 'shmem' : 'anonymous', timeoutMs: 120_000,
  })
  const stuck = r.vcpus.find((v) => v.outcome.kind !== 'synced')
  if (stuck !== undefined) throw new Error(`${kvm.name}: vCPU ${stuck.id} did not reach GUEST_SYNC`)
  return r.overallRate
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: { reps: { type: 'string', default: '11' }, pages: { type: 'string', default: '20480' }, unpinned: { type: 'boolean' } },
  })
  const reps = Number(values.reps)
  const pages = Number(values.pages)
  if (!Number.isInteger(reps) || reps < 5) throw new Error(`--reps ${values.reps}: at least 5 repetitions`)
  if (!Number.isInteger(pages) || pages < 20_000) throw new Error(`--pages ${values.pages}: at least 20,000 pages per vCPU`)

  const load = await loadBackend('native')
  if (!load.available) {
    console.error(`bench: the native backend is not available: ${load.reason}`)
    return 1
  }
  const kvm = load.backend
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kvmconf-bench-'))
  let belowFloor = 0
  const nativeMedians = new Map<Case, number>()
  try {
    const exe = buildReference(dir)
    const info = await kvm.info()
    console.log(`demand paging: kvmconf native vs the C reference (cc -O2), kernel ${info.kernelRelease}, ${os.availableParallelism()} CPUs`)
    console.log(`${reps} repetitions per case, ${fmt(pages)} pages per vCPU, one userfaultfd per vCPU, one reader; rates in pages/s`)
    const [load1] = os.loadavg()
    if (load1! > 0.5) {
      console.log(`note: load average ${load1!.toFixed(2)} on ${os.availableParallelism()} CPUs before the first run: other processes compete for the CPUs, expect a wider spread`)
    }
    for (const pinned of values.unpinned ? [true, false] : [true]) {
      console.log(`\n${pinned ? 'pinned the same way on both sides (held to the floor)' : 'unpinned (reported only)'}`)
      console.log(`${'case'.padEnd(32)}${'C median'.padStart(12)}${'native median'.padStart(15)}   native/C (median of pairs)   spread`)
      for (const c of CASES) {
        const cRates: number[] = []
        const nRates: number[] = []
        for (let i = 0; i < reps; i++) {
          // Alternate which goes first, so that a drift within a pair does not favour one side.
          if (i % 2 === 0) {
            cRates.push(runReference(exe, c, pages, pinned))
            nRates.push(await runBackend(kvm, c, pages, pinned))
          } else {
            nRates.push(await runBackend(kvm, c, pages, pinned))
            cRates.push(runReference(exe, c, pages, pinned))
          }
        }
        if (pinned) nativeMedians.set(c, median(nRates))
        const paired = nRates.map((n, i) => n / cRates[i]!)
        const ratio = median(paired)
        const verdict = !pinned ? '' : ratio >= FLOOR ? `   ok (>= ${FLOOR})` : `   BELOW ${FLOOR}`
        if (pinned && ratio < FLOOR) belowFloor++
        const pin = pinning(c, pinned)
        const name = `-u ${c.mode}${c.mode === 'MINOR' ? ' -s shmem' : ''} -v ${c.vcpus}${pin ? ` -c ${pin.join(',')}` : ''}`
        console.log(
          `${name.padEnd(32)}${fmt(median(cRates)).padStart(12)}${fmt(median(nRates)).padStart(15)}   ${ratio.toFixed(2).padStart(26)}` +
            `   ${`${Math.min(...paired).toFixed(2)}-${Math.max(...paired).toFixed(2)}`.padStart(9)}${verdict}`,
        )
      }
    }
  } finally {
    await kvm.close()
    rmSync(dir, { recursive: true, force: true })
  }

  const emulator = await loadBackend('emulator')
  if (emulator.available && (await emulator.backend.info()).features.includes('demand-paging')) {
    console.log(`\nemulator vs native (target: emulator rate >= ${EMULATOR_TARGET}x native)`)
    for (const c of CASES) {
      // Warm-up runs first, as for the native side's page faults: the emulator is JavaScript, and its
      // first runs measure the JIT and the heap growing, not the model.
      for (let i = 0; i < 3; i++) await runBackend(emulator.backend, c, pages, true)
      const eRates: number[] = []
      for (let i = 0; i < reps; i++) eRates.push(await runBackend(emulator.backend, c, pages, true))
      const ratio = median(eRates) / nativeMedians.get(c)!
      if (ratio < EMULATOR_TARGET) belowFloor++
      console.log(`-u ${c.mode} -v ${c.vcpus}: emulator median ${fmt(median(eRates))}, ${ratio.toFixed(1)}x native ${ratio >= EMULATOR_TARGET ? 'ok' : 'BELOW'}`)
    }
  } else {
    console.log(`\nemulator vs native (target: emulator rate >= ${EMULATOR_TARGET}x native): pending, the emulator does not implement runDemandPaging yet`)
  }
  if (emulator.available) await emulator.backend.close()
  if (belowFloor > 0) console.log(`\n${belowFloor} case(s) below their floor (native/C ${FLOOR}, emulator/native ${EMULATOR_TARGET}x)`)
  return belowFloor > 0 ? 1 : 0
}

process.exitCode = await main()
