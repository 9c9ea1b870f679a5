// One fuzzing session over a backend: fc.commands + fc.asyncModelRun over the model (model.ts) and a
// fresh VM per run (real.ts). Used by `kvmconf fuzz`, the corpus replays and the self-test.

import fc from 'fast-check'
import type { Backend } from '../../harness/backend.ts'
import { CURRENT_COMMAND_SET, fuzzSetup, type CommandSet, type FuzzCommand } from './commands.ts'
import { emptyModel, type FuzzModel } from './model.ts'
import { createReal, type FuzzReal } from './real.ts'

export interface FuzzOptions {
  /** Runs (command sequences); with `timeMs`, an upper bound. */
  numRuns?: number
  /** Stop starting runs after this long (fast-check's interruptAfterTimeLimit). */
  timeMs?: number
  seed?: number
  /** fast-check's path: replays that one run. */
  path?: string
  /** fc.commands' replayPath: which commands of the run were kept while shrinking. */
  replayPath?: string
  /** Commands per run at most. */
  maxCommands?: number
  /** Which command set (commands.ts); a replay file says which it was recorded with. */
  commandSet?: CommandSet
}

export interface FuzzResult {
  seed: number
  commandSet: CommandSet
  runs: number
  commands: number
  elapsedMs: number
  excluded: { command: string; reason: string }[]
  failure: null | { path: string; replayPath: string | undefined; commands: string[]; error: string }
}

/** Counts and records the commands that ran. */
class Counted implements fc.AsyncCommand<FuzzModel, FuzzReal> {
  constructor(readonly inner: FuzzCommand, readonly log: { count: number; ran: string[] }) {}
  check(m: Readonly<FuzzModel>): boolean {
    return this.inner.check(m) as boolean
  }
  async run(m: FuzzModel, r: FuzzReal): Promise<void> {
    this.log.count++
    this.log.ran.push(this.inner.toString())
    await this.inner.run(m, r)
    this.log.ran[this.log.ran.length - 1] = this.inner.toString() // toString may say more once run
  }
  toString(): string {
    return this.inner.toString()
  }
}

export async function runFuzz(kvm: Backend, o: FuzzOptions): Promise<FuzzResult> {
  const commandSet = o.commandSet ?? CURRENT_COMMAND_SET
  const setup = await fuzzSetup(kvm, commandSet)
  const log = { count: 0, ran: [] as string[] }
  // The run in progress: interruptAfterTimeLimit abandons an async run that outlives the limit (it races
  // the predicate with a timer), so runFuzz waits for it, and its teardown, before it returns.
  let current: Promise<void> = Promise.resolve()
  const property = (replayPath?: string) =>
    fc.asyncProperty(
      fc.commands(setup.arbitraries.map((a) => a.map((c) => new Counted(c, log))), {
        maxCommands: o.maxCommands ?? 30,
        size: 'max',
        ...(replayPath !== undefined ? { replayPath } : {}),
      }),
      (cmds) => {
        const run = (async () => {
          log.ran = []
          const real = await createReal(kvm, setup.vcpu, setup.backing)
          let failed = false
          try {
            await fc.asyncModelRun(() => ({ model: emptyModel(), real }), cmds)
          } catch (e) {
            failed = true
            throw e
          } finally {
            // A teardown problem fails the run only when the commands passed: it must not hide their failure.
            await real.close().catch((e: unknown) => {
              if (!failed) throw e
            })
          }
        })()
        current = run.catch(() => {})
        return run
      },
    )
  const seed = o.seed ?? (Date.now() ^ (Math.random() * 0x1_0000_0000)) | 0
  const started = performance.now()
  const details = await fc.check(property(o.replayPath), {
    seed,
    numRuns: o.numRuns ?? (o.timeMs !== undefined ? 1_000_000 : 100),
    ...(o.timeMs !== undefined ? { interruptAfterTimeLimit: o.timeMs, markInterruptAsFailure: false } : {}),
    ...(o.path !== undefined ? { path: o.path, endOnFailure: true } : {}),
  })
  const elapsedMs = performance.now() - started
  const base = { seed, commandSet, runs: details.numRuns, commands: log.count, elapsedMs, excluded: setup.excluded }
  await current
  if (!details.failed || details.counterexample === null || details.counterexamplePath === null) return { ...base, failure: null }
  const replayPath = /replayPath="([^"]*)"/.exec(String(details.counterexample[0]))?.[1]
  // Run the shrunk case once more, to record its commands as they ran (and to show the replay works).
  const again = await fc.check(property(replayPath), { seed, path: details.counterexamplePath, endOnFailure: true })
  const error = again.errorInstance instanceof Error ? again.errorInstance.message : String(details.errorInstance)
  return { ...base, failure: { path: details.counterexamplePath, replayPath, commands: [...log.ran], error } }
}
