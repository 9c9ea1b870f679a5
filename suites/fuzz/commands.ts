// The fuzzer's command arbitraries for one backend: every command file under commands/, minus those the
// backend lacks, each left out with the reason.
//
// Command sets are versioned because fast-check replays a run from its seed and path through the list
// of arbitraries: adding one changes what every recorded path means. 'v1' is the first set (memslots,
// flags, bits, guest reads over anonymous memory) and stays exactly as it was, for the replay files
// recorded with it; 'v2' appends guest writes, shmem host memory (punch holes, MADV_DONTNEED, writes
// through an alias), the userfaultfd (register, copy, continue, unregister, close, and accesses that block
// on it) and KVM_PRE_FAULT_MEMORY.

import fc from 'fast-check'
import type { Backend } from '../../harness/backend.ts'
import { probeKvmUserfault } from '../../harness/kvm-util/userfault.ts'
import { CreateSlot } from './commands/create-slot.ts'
import { DeleteSlot } from './commands/delete-slot.ts'
import { MoveSlot } from './commands/move-slot.ts'
import { SetBit } from './commands/set-bit.ts'
import { ToggleFlag } from './commands/toggle-flag.ts'
import { Touch } from './commands/touch.ts'
import { BASE_GPA, GPA_STEPS, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_USERFAULT, PAGE, SLOT_IDS, SLOT_PAGES, type FuzzModel } from './model.ts'
import type { FuzzReal } from './real.ts'
import { v2Commands } from './commands-v2.ts'

export type FuzzCommand = fc.AsyncCommand<FuzzModel, FuzzReal>

export const COMMAND_SETS = ['v1', 'v2'] as const
export type CommandSet = (typeof COMMAND_SETS)[number]
/** What `kvmconf fuzz` runs and records in new replay files. */
export const CURRENT_COMMAND_SET: CommandSet = 'v2'

export interface FuzzSetup {
  arbitraries: fc.Arbitrary<FuzzCommand>[]
  excluded: { command: string; reason: string }[]
  /** Whether the commands run a vCPU (the backend has the 'vcpu' feature). */
  vcpu: boolean
  /** The slots' host memory: shmem where the set needs it and the backend has it. */
  backing: 'anonymous' | 'shmem'
}

export async function fuzzSetup(kvm: Backend, set: CommandSet = CURRENT_COMMAND_SET): Promise<FuzzSetup> {
  const probe = await probeKvmUserfault(kvm)
  const info = await kvm.info()
  const vcpu = info.features.includes('vcpu')
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
    id.map((i) => new ToggleFlag(i, 'LOG_DIRTY_PAGES')),
    // Mostly sets: a set bit is what makes an access exit.
    fc.tuple(id, page, fc.oneof({ arbitrary: fc.constant(true), weight: 3 }, fc.constant(false))).map(([i, p, v]) => new SetBit(i, p, v)),
  ]
  if (probe.supported) arbitraries.push(id.map((i) => new ToggleFlag(i, 'USERFAULT')))
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
  if (set === 'v1') return { arbitraries, excluded, vcpu, backing: 'anonymous' }
  const v2 = await v2Commands(kvm, info, vcpu)
  return { arbitraries: [...arbitraries, ...v2.arbitraries], excluded: [...excluded, ...v2.excluded], vcpu, backing: v2.backing }
}
