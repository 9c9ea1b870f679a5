// The guest reads the u64 at `gpa` (GUEST_SYNC with the low 32 bits it read), or writes `write` there
// (GUEST_SYNC(1) after it). The model predicts, in the order of KVM's fault path:
// - MMIO where no slot is (the access is answered and the guest goes on);
// - KVM Userfault's exit (KVM_RUN -1/EFAULT, KVM_EXIT_MEMORY_FAULT, flags exactly USERFAULT, the page's
//   gpa, one page) where the slot has KVM_MEM_USERFAULT, the page's bit is set and KVM has not mapped the
//   page (either outcome where it `maybe` has); the bit is then cleared and the vCPU re-entered;
// - then the host access (host-access.ts): through, or blocked on the userfaultfd and released as
//   `release` says. A read must see the page's u32 as the model has it (zero after a punch, what an
//   alias write, UFFDIO_COPY or a guest write left). The page is then mapped by KVM.

import type fc from 'fast-check'
import type { VcpuExit } from '../../../harness/backend.ts'
import { describeExit, getUcall, guestSync } from '../../../harness/kvm-util/ucall.ts'
import { KVM_MEMORY_EXIT_FLAG_USERFAULT } from '../../../harness/uapi/series.ts'
import { hostAccess, type Release } from '../host-access.ts'
import { hex, KVM_MEM_USERFAULT, PAGE, slotAt, type FuzzModel } from '../model.ts'
import { GuestTarget, type TouchTarget } from '../guest-target.ts'
import type { FuzzReal } from '../real.ts'

type Predicted = 'none' | 'mmio' | 'userfault' | 'none-or-userfault'

const RUN = { timeoutMs: 10_000 }

export type { TouchTarget }

export interface TouchOptions {
  /** A u32 to write; a read when absent. */
  write?: number
  /** How a block on the userfaultfd is released (host-access.ts). */
  release?: Release
  /** UFFDIO_COPY's u32 when a MISSING block is resolved. */
  fill?: number
}

export class Touch implements fc.AsyncCommand<FuzzModel, FuzzReal> {
  private readonly at: GuestTarget
  constructor(readonly target: TouchTarget, readonly opts: TouchOptions = {}) {
    this.at = new GuestTarget(target)
  }

  check(m: Readonly<FuzzModel>): boolean {
    return this.at.exists(m)
  }

  async run(m: FuzzModel, r: FuzzReal): Promise<void> {
    const gpa = this.at.gpa(m)
    const write = this.opts.write
    const at = slotAt(m, gpa)
    const key = at && `${at.id}:${at.page}`
    const mapped = key === undefined ? undefined : m.mapped.get(key)
    const predicted: Predicted =
      at === undefined ? 'mmio'
      : (at.slot.flags & KVM_MEM_USERFAULT) === 0 || !m.bits.get(at.id)!.has(at.page) || mapped === 'yes' ? 'none'
      : mapped === 'maybe' ? 'none-or-userfault'
      : 'userfault'
    const vcpu = r.vcpu!
    await vcpu.loadProgram({ steps: [write === undefined ? { op: 'read', gva: gpa } : { op: 'write', gva: gpa, value: write }, guestSync(write === undefined ? undefined : 1)] })
    const fail = (want: string, got: VcpuExit): never => {
      throw new Error(`${this.toString()}: the model predicts ${want}, the backend gave ${describeExit(got)}`)
    }
    const isSync = (e: VcpuExit) => getUcall(e)?.cmd === 'sync'

    if (at === undefined) {
      let exit = await r.track(vcpu.run(RUN))
      if (exit.kind !== 'mmio' || exit.physAddr !== gpa || exit.isWrite !== (write !== undefined)) fail(`an MMIO ${write === undefined ? 'read' : 'write'} of ${hex(gpa)}`, exit)
      exit = await r.track(vcpu.run(write === undefined ? { ...RUN, mmioData: new Uint8Array(exit.kind === 'mmio' ? exit.len : 8) } : RUN))
      if (!isSync(exit)) fail('GUEST_SYNC once the MMIO access is answered', exit)
      return
    }

    const access = (mayBlock: boolean) => hostAccess(m, r, {
      id: at.id, page: at.page, write: write !== undefined, ...(write !== undefined ? { value: write } : {}),
      release: this.opts.release ?? 'resolve', fill: this.opts.fill ?? 0xab, label: this.toString(), mayBlock,
    }, () => vcpu.run(RUN), describeExit, (e) => e.kind !== 'memory_fault')
    let exit = await access(predicted !== 'userfault')
    if (exit.kind === 'memory_fault' && predicted !== 'none') {
      const page = gpa & ~(PAGE - 1n)
      const want = `a userfault exit (EFAULT, flags 0x10, gpa ${hex(page)}, size 0x1000)`
      if (exit.errno !== 'EFAULT' || exit.flags !== KVM_MEMORY_EXIT_FLAG_USERFAULT || exit.gpa !== page || exit.size !== PAGE) fail(want, exit)
      await r.host.get(at.id)!.bitmap.clear(at.page)
      m.bits.get(at.id)!.delete(at.page)
      exit = await access(true)
    } else if (predicted === 'userfault') {
      fail(`a userfault exit (EFAULT, flags 0x10, gpa ${hex(gpa & ~(PAGE - 1n))}, size 0x1000)`, exit)
    }
    if (!isSync(exit)) fail(predicted === 'none' ? 'no exit before GUEST_SYNC' : 'GUEST_SYNC once resolved', exit)
    const value = m.host.pages.get(at.id)![at.page]!.value
    const read = getUcall(exit)
    if (write === undefined && read?.cmd === 'sync' && read.value !== value) {
      throw new Error(`${this.toString()}: the model predicts the guest reads 0x${value.toString(16)}, the backend read 0x${read.value.toString(16)}`)
    }
    m.mapped.set(key!, 'yes')
  }

  toString(): string {
    const what = this.opts.write === undefined ? 'guest read of' : `guest write of 0x${this.opts.write.toString(16)} to`
    const how = this.opts.release === undefined || this.opts.release === 'resolve' ? '' : `, a block released by ${this.opts.release}`
    return `${what} ${this.at.describe()}${how}`
  }
}
