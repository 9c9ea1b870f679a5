// KVM_PRE_FAULT_MEMORY of one page: at `gpa`, or page `page` of memslot `id` wherever it is. The model
// (api.rst §4.143, upstream-selftests.md §E.1): no memslot -> -1/ENOENT with the range unchanged
// (RET_PF_EMULATE); otherwise the page is faulted in as a read fault would be and the call returns 0 with
// nothing left (gpa advanced by a page, size 0), and KVM maps the page.
// KVM Userfault: the series does not exempt pre-faulting, and x86 v3 checks the bitmap in
// __kvm_mmu_faultin_pfn(), the path kvm_tdp_map_page() takes; so a set bit on a page KVM has not mapped
// makes the call fail with EFAULT (nothing processed). On a page KVM has mapped it is the kernel's choice:
// with A/D bits fast_page_fault() cannot take a not-present fault, so the slow path reads the bit
// (EFAULT); without, it finds the SPTE (RET_PF_SPURIOUS, progress). The host side may block on the
// userfaultfd like a guest read (host-access.ts): the ioctl then stays in flight until released.

import type fc from 'fast-check'
import type { PreFaultResult } from '../../../harness/backend.ts'
import { hostAccess, type Release } from '../host-access.ts'
import { hex, KVM_MEM_USERFAULT, PAGE, slotAt, type FuzzModel } from '../model.ts'
import { expectOneOf } from '../outcome.ts'
import type { FuzzReal } from '../real.ts'
import { GuestTarget, type TouchTarget } from '../guest-target.ts'

const describe = (r: PreFaultResult) => `${r.ok ? 'ret 0' : `ret -1 (${r.error.code})`}, gpa ${hex(r.gpa)}, size ${hex(r.size)}`

export class PreFault implements fc.AsyncCommand<FuzzModel, FuzzReal> {
  private readonly at: GuestTarget
  constructor(readonly target: TouchTarget, readonly release: Release = 'resolve') {
    this.at = new GuestTarget(target)
  }

  check(m: Readonly<FuzzModel>): boolean {
    return this.at.exists(m)
  }

  async run(m: FuzzModel, r: FuzzReal): Promise<void> {
    const gpa = this.at.gpa(m)
    const at = slotAt(m, gpa)
    const call = () => r.vcpu!.preFaultMemory({ gpa, size: PAGE })
    if (at === undefined) {
      const res = await r.track(call())
      if (res.ok || res.error.code !== 'ENOENT' || res.gpa !== gpa || res.size !== PAGE) {
        throw new Error(`${this.toString()}: the model predicts ret -1 (ENOENT), gpa ${hex(gpa)}, size 0x1000, the backend gave ${describe(res)}`)
      }
      return
    }
    const key = `${at.id}:${at.page}`
    const bit = (at.slot.flags & KVM_MEM_USERFAULT) !== 0 && m.bits.get(at.id)!.has(at.page)
    const mapped = m.mapped.get(key)
    const wants = !bit ? ['ok'] : mapped === undefined ? ['EFAULT'] : ['ok', 'EFAULT']
    const res = await hostAccess(m, r, {
      id: at.id, page: at.page, write: false, release: this.release, fill: 0xcd, label: this.toString(), mayBlock: wants.includes('ok'),
    }, call, describe, (res) => res.ok)
    expectOneOf(res.ok ? 'ok' : res.error.code, wants, this.toString())
    const left = res.ok ? { gpa: gpa + PAGE, size: 0n } : { gpa, size: PAGE }
    if (res.gpa !== left.gpa || res.size !== left.size) {
      throw new Error(`${this.toString()}: the model predicts gpa ${hex(left.gpa)}, size ${hex(left.size)} left, the backend gave ${describe(res)}`)
    }
    if (res.ok) m.mapped.set(key, 'yes')
  }

  toString(): string {
    const how = this.release === 'resolve' ? '' : `, a block released by ${this.release}`
    return `KVM_PRE_FAULT_MEMORY(${this.at.describe()}, 1 page)${how}`
  }
}
