// The guest reads the u64 at `gpa` (GUEST_SYNC after it). The model predicts the exit: MMIO where no
// slot is; KVM Userfault's exit (KVM_RUN -1/EFAULT, KVM_EXIT_MEMORY_FAULT, flags exactly USERFAULT, the
// page's gpa, one page) where the slot has KVM_MEM_USERFAULT, the page's bit is set and KVM has not
// mapped the page (either outcome where it `maybe` has); otherwise none. An exit is then resolved (the
// MMIO read answered, the bit cleared) and the guest must reach GUEST_SYNC; the page is then mapped.

import type fc from 'fast-check'
import type { VcpuExit } from '../../../harness/backend.ts'
import { describeExit, getUcall, guestSync } from '../../../harness/kvm-util/ucall.ts'
import { KVM_MEMORY_EXIT_FLAG_USERFAULT } from '../../../harness/uapi/series.ts'
import { hex, KVM_MEM_USERFAULT, PAGE, slotAt, type FuzzModel, type SlotId } from '../model.ts'
import type { FuzzReal } from '../real.ts'

type Predicted = 'none' | 'mmio' | 'userfault' | 'none-or-userfault'

const RUN = { timeoutMs: 10_000 }

/** A gpa, or page `page` of memslot `id` wherever the slot is when the command runs. */
export type TouchTarget = bigint | { id: SlotId; page: number }

export class Touch implements fc.AsyncCommand<FuzzModel, FuzzReal> {
  private gpa: bigint | undefined
  constructor(readonly target: TouchTarget) {
    if (typeof target === 'bigint') this.gpa = target
  }

  check(m: Readonly<FuzzModel>): boolean {
    return typeof this.target === 'bigint' || m.slots.has(this.target.id)
  }

  async run(m: FuzzModel, r: FuzzReal): Promise<void> {
    if (typeof this.target !== 'bigint') this.gpa = m.slots.get(this.target.id)!.gpa + BigInt(this.target.page) * PAGE
    await this.read(m, r, this.gpa!)
  }

  private async read(m: FuzzModel, r: FuzzReal, gpa: bigint): Promise<void> {
    const at = slotAt(m, gpa)
    const key = at && `${at.id}:${at.page}`
    const mapped = key === undefined ? undefined : m.mapped.get(key)
    const predicted: Predicted =
      at === undefined ? 'mmio'
      : (at.slot.flags & KVM_MEM_USERFAULT) === 0 || !m.bits.get(at.id)!.has(at.page) || mapped === 'yes' ? 'none'
      : mapped === 'maybe' ? 'none-or-userfault'
      : 'userfault'
    const vcpu = r.vcpu!
    await vcpu.loadProgram({ steps: [{ op: 'read', gva: gpa }, guestSync(1)] })
    let exit = await vcpu.run(RUN)
    const fail = (want: string, got: VcpuExit): never => {
      throw new Error(`${this.toString()}: the model predicts ${want}, the backend gave ${describeExit(got)}`)
    }
    const isSync = (e: VcpuExit) => getUcall(e)?.cmd === 'sync'
    if (predicted === 'mmio') {
      if (exit.kind !== 'mmio' || exit.physAddr !== gpa || exit.isWrite) fail(`an MMIO read of ${hex(gpa)}`, exit)
      exit = await vcpu.run({ ...RUN, mmioData: new Uint8Array(exit.kind === 'mmio' ? exit.len : 8) })
    } else if (predicted === 'userfault' || (predicted === 'none-or-userfault' && !isSync(exit))) {
      const page = gpa & ~(PAGE - 1n)
      const want = `a userfault exit (EFAULT, flags 0x10, gpa ${hex(page)}, size 0x1000)`
      if (exit.kind !== 'memory_fault' || exit.errno !== 'EFAULT' || exit.flags !== KVM_MEMORY_EXIT_FLAG_USERFAULT ||
        exit.gpa !== page || exit.size !== PAGE) fail(want, exit)
      await r.host.get(at!.id)!.bitmap.clear(at!.page)
      m.bits.get(at!.id)!.delete(at!.page)
      exit = await vcpu.run(RUN)
    }
    if (!isSync(exit)) fail(predicted === 'none' ? 'no exit before GUEST_SYNC' : 'GUEST_SYNC once resolved', exit)
    if (key !== undefined) m.mapped.set(key, 'yes')
  }

  toString(): string {
    if (typeof this.target === 'bigint') return `guest read of gpa ${hex(this.target)}`
    return `guest read of slot ${this.target.id} page ${this.target.page}${this.gpa === undefined ? '' : ` (gpa ${hex(this.gpa)})`}`
  }
}
