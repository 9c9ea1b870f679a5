// The commands command set 'v2' adds to 'v1' (commands.ts), and what a backend lacks for them:
// - shmem host memory (BackendInfo.backings) for punching, MADV_DONTNEED, alias writes and MINOR;
// - the 'userfaultfd' feature for every userfaultfd command and for releasing blocked accesses (the
//   commands join by themselves once a backend declares it);
// - KVM_PRE_FAULT_MEMORY: KVM_CAP_PRE_FAULT_MEMORY non-zero and a probe call on a mapped page that
//   succeeds (the project's PVM hosts report 0 and answer EOPNOTSUPP: no TDP, host-kvm.md).

import fc from 'fast-check'
import type { Backend, BackendInfo } from '../../harness/backend.ts'
import { guestDone } from '../../harness/kvm-util/ucall.ts'
import { KVM_CAP_PRE_FAULT_MEMORY } from '../../harness/uapi/kvm.ts'
import type { FuzzCommand } from './commands.ts'
import { MadvDontneed } from './commands/madv-dontneed.ts'
import { PreFault } from './commands/pre-fault.ts'
import { PunchHole } from './commands/punch-hole.ts'
import { Touch } from './commands/touch.ts'
import { UffdClose } from './commands/uffd-close.ts'
import { UffdContinue } from './commands/uffd-continue.ts'
import { UffdCopy } from './commands/uffd-copy.ts'
import { UffdRegister } from './commands/uffd-register.ts'
import { UffdUnregister } from './commands/uffd-unregister.ts'
import { WriteAlias } from './commands/write-alias.ts'
import type { Release } from './host-access.ts'
import { BASE_GPA, GPA_STEPS, PAGE, SLOT_IDS, SLOT_PAGES } from './model.ts'

export interface V2Commands {
  arbitraries: fc.Arbitrary<FuzzCommand>[]
  excluded: { command: string; reason: string }[]
  backing: 'anonymous' | 'shmem'
}

export async function v2Commands(kvm: Backend, info: BackendInfo, vcpu: boolean): Promise<V2Commands> {
  const arbitraries: fc.Arbitrary<FuzzCommand>[] = []
  const excluded: V2Commands['excluded'] = []
  const id = fc.constantFrom(...SLOT_IDS)
  const page = fc.integer({ min: 0, max: SLOT_PAGES - 1 })
  // A u32 every byte of which is b: easy to tell apart in a failure, never zero (a punched page's value).
  const value = fc.integer({ min: 1, max: 255 }).map((b) => (b * 0x01010101) >>> 0)
  const shmem = info.backings.includes('shmem')
  const uffd = shmem && info.features.includes('userfaultfd')

  if (shmem) {
    arbitraries.push(
      fc.tuple(id, page).map(([i, p]) => new PunchHole(i, p)),
      fc.tuple(id, page).map(([i, p]) => new MadvDontneed(i, p)),
      fc.tuple(id, page, value).map(([i, p, v]) => new WriteAlias(i, p, v)),
    )
  } else {
    excluded.push({ command: 'punch hole, MADV_DONTNEED, alias write', reason: `the ${kvm.name} backend cannot map shmem` })
  }

  const release: fc.Arbitrary<Release> = uffd
    ? fc.oneof({ arbitrary: fc.constant<Release>('resolve'), weight: 4 }, fc.constant<Release>('unregister'), fc.constant<Release>('close'))
    : fc.constant<Release>('resolve')
  if (uffd) {
    const mode = fc.constantFrom('MISSING' as const, 'MINOR' as const)
    arbitraries.push(
      fc.tuple(id, mode).map(([i, m]) => new UffdRegister(i, m)),
      fc.tuple(id, mode).map(([i, m]) => new UffdRegister(i, m)),
      id.map((i) => new UffdUnregister(i)),
      fc.constant(null).map(() => new UffdClose()),
      fc.tuple(id, page, value).map(([i, p, v]) => new UffdCopy(i, p, v)),
      fc.tuple(id, page).map(([i, p]) => new UffdContinue(i, p)),
    )
  } else {
    const why = shmem ? `the ${kvm.name} backend cannot do 'userfaultfd' yet` : `the ${kvm.name} backend cannot map shmem`
    excluded.push({ command: 'UFFDIO_REGISTER/UNREGISTER/COPY/CONTINUE, close(userfaultfd), accesses blocked on userfaultfd', reason: why })
  }

  if (vcpu) {
    const lastPage = GPA_STEPS - 1 + SLOT_PAGES
    const anyGpa = fc.integer({ min: 0, max: lastPage }).map((p) => BASE_GPA + BigInt(p) * PAGE)
    const slotPage = fc.tuple(id, page).map(([i, p]) => ({ id: i, page: p }))
    arbitraries.push(
      fc.tuple(anyGpa, value).map(([g, v]) => new Touch(g, { write: v })),
      fc.tuple(slotPage, value, release, value).map(([t, v, rel, fill]) => new Touch(t, { write: v, release: rel, fill })),
      fc.tuple(slotPage, release, value).map(([t, rel, fill]) => new Touch(t, { release: rel, fill })),
    )
    const refused = await probePreFault(kvm)
    if (refused === undefined) {
      arbitraries.push(anyGpa.map((g) => new PreFault(g)), fc.tuple(slotPage, release).map(([t, rel]) => new PreFault(t, rel)))
    } else {
      excluded.push({ command: 'KVM_PRE_FAULT_MEMORY', reason: refused })
    }
  } else {
    excluded.push({ command: 'guest write, KVM_PRE_FAULT_MEMORY', reason: `the ${kvm.name} backend cannot do 'vcpu'` })
  }
  return { arbitraries, excluded, backing: shmem ? 'shmem' : 'anonymous' }
}

/** Why KVM_PRE_FAULT_MEMORY cannot be fuzzed here, or undefined: the capability, then one real call. */
async function probePreFault(kvm: Backend): Promise<string | undefined> {
  const cap = await kvm.checkExtension(KVM_CAP_PRE_FAULT_MEMORY)
  const vm = await kvm.createVm()
  const mem = await kvm.mmap({ size: PAGE, backing: 'anonymous' })
  try {
    const vcpu = await vm.createVcpu(0)
    await vcpu.loadProgram({ steps: [guestDone()] })
    await vm.setUserMemoryRegion({ slot: 1, flags: 0, guestPhysAddr: BASE_GPA, memorySize: PAGE, userspaceAddr: mem.addr })
    const r = await vcpu.preFaultMemory({ gpa: BASE_GPA, size: PAGE })
    const call = r.ok ? 'succeeds' : `fails with ${r.error.code}`
    if (cap === 0) return `KVM_CAP_PRE_FAULT_MEMORY = 0 on this ${kvm.name} backend (KVM_PRE_FAULT_MEMORY of a mapped page ${call})`
    if (!r.ok) return `KVM_PRE_FAULT_MEMORY of a mapped page ${call} on this ${kvm.name} backend`
    return undefined
  } finally {
    await vm.close()
    await mem.close()
  }
}
