// The vitest setup file `kvmconf run` adds to the conformance project: the worker's half of the run.
//
// - A journal (KVMCONF_JOURNAL): one line when a test starts and one when it ends, appended
//   synchronously. vitest batches its results on their way to the reporter, so when a worker dies
//   (a crash in the native addon, the kernel killing it) the tests of that batch come back "pending";
//   the journal tells the reporter which test was running (CRASH) and what the finished ones did.
//   syzkaller's executor sends "executing" before each program for the same reason.
// - With KVMCONF_KMSG (`--kmsg`), the kernel log around each test (harness/kernel-log.ts), kept in
//   `task.meta.kvmconf.kernelLog` for the reporter: `local` reads this machine's, `remote` asks the
//   agent for its machine's (RemoteBackend.kernelLogStart/Finish). The end marker is written from
//   onTestFinished, which vitest calls after the `kvm` fixture has closed the test's VMs, so teardown is
//   covered too.

import { appendFileSync } from 'node:fs'
import { beforeEach } from 'vitest'
import { backendUnderTest } from '../context.ts'
import { KernelLogWatcher, type KernelLogSource } from '../kernel-log.ts'
import type { KernelLog } from '../results.ts'
import type { ErrorLike, KvmconfTaskMeta } from '../reporters/outcome.ts'

/** One journal line; `end` carries what the reporter needs to rebuild the test's record. */
export type JournalEntry =
  | { event: 'start'; id: string; pid: number }
  | { event: 'end'; id: string; state: string; note?: string; error?: ErrorLike; meta?: KvmconfTaskMeta; durationMs: number }

const journal = process.env.KVMCONF_JOURNAL
/** The kernel log's two halves around a test, wherever the kernel under test runs. */
interface TestKernelLog {
  start(test: string): Promise<void>
  /** The log since start(), or undefined when there is no kernel to ask (the test skips for that). */
  finish(test: string): Promise<KernelLog | undefined>
}

function localKernelLog(): TestKernelLog {
  const watcher = new KernelLogWatcher()
  return { start: async (test) => watcher.start(test), finish: async (test) => watcher.finish(test) }
}

/** The agent's machine's log, through this worker's session (the backend under test). */
function remoteKernelLog(): TestKernelLog {
  // An agent that cannot be reached makes every test skip with the reason; nothing to log then.
  const agent = async (): Promise<KernelLogSource | undefined> => {
    const load = await backendUnderTest()
    return load.available ? (load.backend as unknown as KernelLogSource) : undefined
  }
  return {
    start: async (test) => (await agent())?.kernelLogStart(test),
    finish: async (test) => (await agent())?.kernelLogFinish(test),
  }
}

const kmsg = process.env.KVMCONF_KMSG
const kernelLog = kmsg === 'remote' ? remoteKernelLog() : kmsg === 'local' ? localKernelLog() : undefined

function record(entry: JournalEntry): void {
  if (journal) appendFileSync(journal, JSON.stringify(entry) + '\n')
}

beforeEach(async ({ task, onTestFinished }) => {
  const name = task.fullTestName ?? task.name
  const started = performance.now()
  record({ event: 'start', id: task.id, pid: process.pid })
  await kernelLog?.start(name)
  onTestFinished(async () => {
    const log = await kernelLog?.finish(name)
    if (log !== undefined) task.meta.kvmconf = { ...task.meta.kvmconf, kernelLog: log }
    const first = task.result?.errors?.[0] as ErrorLike | undefined
    const error = first && { name: first.name, message: first.message, code: first.code, op: first.op }
    record({
      event: 'end',
      id: task.id,
      state: task.result?.state ?? 'unknown',
      note: (task.result as { note?: string } | undefined)?.note,
      error,
      meta: task.meta.kvmconf,
      durationMs: Math.round(performance.now() - started),
    })
  })
})
