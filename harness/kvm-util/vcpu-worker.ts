// A vCPU "thread" as set_memory_region_test's vcpu_worker: run the vCPU in a loop, count GUEST_SYNCs
// on a semaphore the test waits on (wait_for_vcpu), answer MMIO reads, and stop at the first other exit.
// The vCPU runs on its backend's own thread; this loop only reacts to its exits on the event loop.

import type { Vcpu, VcpuExit } from '../backend.ts'
import { describeExit, getUcall } from './ucall.ts'

export interface VcpuWorkerOptions {
  /** The data a guest MMIO read gets, or a thrown error when the read is not one the test allows. */
  onMmio?: (exit: Extract<VcpuExit, { kind: 'mmio' }>) => Uint8Array
  /** A bound on any one KVM_RUN, so a stuck guest fails the test instead of hanging it. */
  runTimeoutMs?: number
}

export class VcpuWorker {
  /** The value of every GUEST_SYNC so far, in order. */
  readonly syncs: number[] = []
  /** The first exit that was neither a GUEST_SYNC nor an answered MMIO read. */
  readonly finished: Promise<VcpuExit>
  /** How many GUEST_SYNCs waitForSync has taken: the semaphore's count is syncs.length - taken. */
  private taken = 0
  private waiters: (() => void)[] = []

  constructor(private readonly vcpu: Vcpu, private readonly opts: VcpuWorkerOptions = {}) {
    this.finished = this.loop()
    this.finished.catch(() => {})
  }

  private async loop(): Promise<VcpuExit> {
    let mmioData: Uint8Array | undefined
    for (;;) {
      const exit = await this.vcpu.run({ timeoutMs: this.opts.runTimeoutMs ?? 30_000, mmioData })
      mmioData = undefined
      const ucall = getUcall(exit)
      if (ucall?.cmd === 'sync') {
        this.syncs.push(ucall.value)
        this.waiters.shift()?.()
        continue
      }
      if (exit.kind === 'mmio' && this.opts.onMmio) {
        mmioData = this.opts.onMmio(exit)
        continue
      }
      return exit
    }
  }

  /**
   * wait_for_vcpu(): take one GUEST_SYNC, failing after `timeoutMs` (upstream: sem_timedwait of 2 s)
   * or as soon as the vCPU stops for another reason.
   */
  async waitForSync(timeoutMs = 2000): Promise<number> {
    if (this.taken >= this.syncs.length) {
      let timer: NodeJS.Timeout | undefined
      const posted = new Promise<void>((resolve) => this.waiters.push(resolve))
      const timedOut = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no GUEST_SYNC from the vCPU within ${timeoutMs} ms`)), timeoutMs)
      })
      const stopped = this.finished.then((exit) => {
        throw new Error(`the vCPU stopped (${describeExit(exit)}) while the test waited for a GUEST_SYNC`)
      })
      try {
        await Promise.race([posted, timedOut, stopped])
      } finally {
        clearTimeout(timer)
      }
    }
    return this.syncs[this.taken++] as number
  }
}

export { setTimeout as sleep } from 'node:timers/promises'
