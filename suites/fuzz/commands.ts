// The fuzzer's command arbitraries for one backend: every command file under commands/, minus those the
// backend lacks, each left out with the reason.

import fc from 'fast-check'
import type { Backend } from '../../harness/backend.ts'
import { probeKvmUserfault } from '../../harness/kvm-util/userfault.ts'
import { CreateSlot } from './commands/create-slot.ts'
import { DeleteSlot } from './commands/delete-slot.ts'
import { MoveSlot } from './commands/move-slot.ts'
import { SetBit } from './commands/set-bit.ts'
import { ToggleDirtyLog } from './commands/toggle-dirty-log.ts'
import { ToggleUserfault } from './commands/toggle-userfault.ts'
import { Touch } from './commands/touch.ts'
import { BASE_GPA, GPA_STEPS, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_USERFAULT, PAGE, SLOT_IDS, SLOT_PAGES, type FuzzModel } from './model.ts'
import type { FuzzReal } from './real.ts'

export type FuzzCommand = fc.AsyncCommand<FuzzModel, FuzzReal>

export interface FuzzSetup {
  arbitraries: fc.Arbitrary<FuzzCommand>[]
  excluded: { command: string; reason: string }[]
  /** Whether the commands run a vCPU (the backend has the 'vcpu' feature). */
  vcpu: boolean
}

export async function fuzzSetup(kvm: Backend): Promise<FuzzSetup> {
  const probe = await probeKvmUserfault(kvm)
  const vcpu = (await kvm.info()).features.includes('vcpu')
  const excluded: FuzzSetup['excluded'] = []
  const id = fc.constantFrom(...SLOT_IDS)
  const at = fc.integer({ min: 0, max: GPA_STEPS - 1 })
  const page = fc.integer({ min: 0, max: SLOT_PAGES - 1 })
  const v2Flags = probe.supported ? [0, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_USERFAULT, KVM_MEM_USERFAULT | KVM_MEM_LOG_DIRTY_PAGES] : [0, KVM_MEM_LOG_DIRTY_PAGES]
  const arbitraries: fc.Arbitrary<FuzzCommand>[] = [
    fc.tuple(id, at, fc.constantFrom(...v2Flags)).map(([i, a, f]) => new CreateSlot(i, a, f, false)),
    // The legacy ioctl: KVM_MEM_USERFAULT is EINVAL there whether or not the kernel has KVM Userfault.
    fc.tuple(id, at, fc.constantFrom(0, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_USERFAULT)).map(([i, a, f]) => new CreateSlot(i, a, f, true)),
    id.map((i) => new DeleteSlot(i)),
    fc.tuple(id, at).map(([i, a]) => new MoveSlot(i, a)),
    id.map((i) => new ToggleDirtyLog(i)),
    // Mostly sets: a set bit is what makes an access exit.
    fc.tuple(id, page, fc.oneof({ arbitrary: fc.constant(true), weight: 3 }, fc.constant(false))).map(([i, p, v]) => new SetBit(i, p, v)),
  ]
  if (probe.supported) arbitraries.push(id.map((i) => new ToggleUserfault(i)))
  else excluded.push({ command: 'toggle USERFAULT, create with USERFAULT via REGION2', reason: probe.reason })
  if (vcpu) {
    // Pages of every base gpa's slot and a little past the last one (where no slot ever is).
    const lastPage = GPA_STEPS - 1 + SLOT_PAGES
    const touch = fc.integer({ min: 0, max: lastPage }).map((p) => new Touch(BASE_GPA + BigInt(p) * PAGE))
    const touchSlotPage = fc.tuple(id, page).map(([i, p]) => new Touch({ id: i, page: p }))
    // Touches weigh more: they are what exits are about; a slot's own pages meet its bitmap's bits.
    arbitraries.push(touch, touchSlotPage, touchSlotPage)
  } else {
    excluded.push({ command: 'guest read', reason: `the ${kvm.name} backend cannot do 'vcpu'` })
  }
  return { arbitraries, excluded, vcpu }
}
