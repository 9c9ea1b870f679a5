// Property: for any 32-bit memslot flags value, VM type (each one KVM_CAP_VM_TYPES lists), ioctl
// (KVM_SET_USER_MEMORY_REGION or ...REGION2) and the capabilities probed from the backend, whether the
// kernel accepts a CREATE equals `accepts()` below: the rules of upstream-selftests.md §C.3 (flags) and
// §F.2/§F.6 (KVM_MEM_USERFAULT), written from the reference, not from the emulator. Every other field of
// the region is valid (page-aligned gpa, size and hva, a guest_memfd of the VM where GUEST_MEMFD is
// asked, a userfault bitmap where USERFAULT is), so the flags alone decide. fast-check prints the seed
// and path of a failure.

import fc from 'fast-check'
import type { Backend } from '../../harness/backend.ts'
import { KvmError } from '../../harness/errors.ts'
import { vmTypeName } from '../../harness/gating.ts'
import { probeKvmUserfault } from '../../harness/kvm-util/userfault.ts'
import { describe, expect, test } from '../../harness/test.ts'
import {
  KVM_CAP_GUEST_MEMFD,
  KVM_CAP_USER_MEMORY2,
  KVM_CAP_VM_TYPES,
  KVM_MEM_GUEST_MEMFD,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_READONLY,
  KVM_X86_DEFAULT_VM,
  KVM_X86_SEV_ES_VM,
  KVM_X86_SNP_VM,
  KVM_X86_TDX_VM,
} from '../../harness/uapi/kvm.ts'
import { KVM_MEM_USERFAULT } from '../../harness/uapi/series.ts'

const PAGE = 4096
const SLOT = 7
const GPA = 0x1_0000_0000n

type Ioctl = 'KVM_SET_USER_MEMORY_REGION' | 'KVM_SET_USER_MEMORY_REGION2'

/** What was probed of the backend for one VM type. */
interface Caps {
  /** KVM_CHECK_EXTENSION(KVM_CAP_GUEST_MEMFD) on the VM: GUEST_MEMFD is a valid flag for it. */
  guestMemfd: boolean
  /** READONLY is valid for the VM: on x86 unless the VM has protected state (SEV-ES, SNP, TDX). */
  readonly: boolean
  /** The userfault probe accepted KVM_MEM_USERFAULT. */
  userfault: boolean
}

/** §C.3 and §F.2: whether a CREATE with `flags` (every other field valid) succeeds. */
function accepts(flags: number, ioctl: Ioctl, caps: Caps): boolean {
  const legacy = KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY
  if (ioctl === 'KVM_SET_USER_MEMORY_REGION' && (flags & ~legacy) !== 0) return false
  const gmem = (flags & KVM_MEM_GUEST_MEMFD) !== 0
  let valid = KVM_MEM_LOG_DIRTY_PAGES
  if (caps.guestMemfd) valid |= KVM_MEM_GUEST_MEMFD
  if (gmem) valid &= ~KVM_MEM_LOG_DIRTY_PAGES
  if (caps.readonly && !gmem) valid |= KVM_MEM_READONLY
  if (caps.userfault) valid |= KVM_MEM_USERFAULT
  return (flags & ~valid) === 0
}

/** The VM types this backend lists and can create, with their capabilities. */
async function vmTypes(kvm: Backend): Promise<{ type: number; caps: Caps }[]> {
  const mask = BigInt(await kvm.checkExtension(KVM_CAP_VM_TYPES)) | 1n // the default VM needs no listing
  const userfault = (await probeKvmUserfault(kvm)).supported
  const arch = (await kvm.info()).arch
  const out: { type: number; caps: Caps }[] = []
  for (let type = 0; type < 32; type++) {
    if ((mask & (1n << BigInt(type))) === 0n) continue
    let vm
    try {
      vm = await kvm.createVm({ type })
    } catch (e) {
      if (KvmError.is(e) && type !== KVM_X86_DEFAULT_VM) continue // listed, but needs firmware setup (SEV, TDX)
      throw e
    }
    const guestMemfd = (await vm.checkExtension(KVM_CAP_GUEST_MEMFD)) > 0
    await vm.close()
    const protectedState = arch === 'x86_64' && [KVM_X86_SEV_ES_VM, KVM_X86_SNP_VM, KVM_X86_TDX_VM].includes(type)
    out.push({ type, caps: { guestMemfd, readonly: !protectedState, userfault } })
  }
  return out
}

/** Flags: mostly the four defined bits in every combination, sometimes any u32. */
const flagsArb = fc.oneof(
  { arbitrary: fc.integer({ min: 0, max: 15 }), weight: 3 },
  { arbitrary: fc.integer({ min: 0, max: 0xffff_ffff }), weight: 1 },
  { arbitrary: fc.integer({ min: 0, max: 31 }).map((b) => (1 << b) >>> 0), weight: 1 },
)

describe('properties: memslot flags', () => {
  test('a CREATE is accepted iff the flags are valid for the ioctl, the VM type and the capabilities', async ({ kvm }) => {
    const types = await vmTypes(kvm)
    const region2 = (await kvm.checkExtension(KVM_CAP_USER_MEMORY2)) > 0
    const ioctls: Ioctl[] = region2 ? ['KVM_SET_USER_MEMORY_REGION', 'KVM_SET_USER_MEMORY_REGION2'] : ['KVM_SET_USER_MEMORY_REGION']
    const mem = await kvm.mmap({ size: PAGE, backing: 'anonymous' })
    const bitmap = await kvm.createUserfaultBitmap(1)
    await bitmap.fill(false)
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...types), fc.constantFrom(...ioctls), flagsArb, async ({ type, caps }, ioctl, flags) => {
        const vm = await kvm.createVm({ type })
        try {
          const gmem = (flags & KVM_MEM_GUEST_MEMFD) !== 0 && caps.guestMemfd ? await vm.createGuestMemfd({ size: PAGE }) : undefined
          const region = { slot: SLOT, flags, guestPhysAddr: GPA, memorySize: PAGE, userspaceAddr: mem.addr }
          const call = ioctl === 'KVM_SET_USER_MEMORY_REGION'
            ? vm.setUserMemoryRegion(region)
            : vm.setUserMemoryRegion2({ ...region, guestMemfd: gmem?.fd ?? 0, guestMemfdOffset: 0, userfaultBitmap: bitmap.addr })
          const got = await call.then(() => 'accepted', (e: unknown) => {
            if (KvmError.is(e)) return e.code
            throw e
          })
          const want = accepts(flags, ioctl, caps)
          const what = `${ioctl} CREATE with flags 0x${flags.toString(16)} on a ${vmTypeName(type)} ` +
            `(guest_memfd ${caps.guestMemfd}, readonly ${caps.readonly}, userfault ${caps.userfault})`
          expect(got, what).toBe(want ? 'accepted' : 'EINVAL')
        } finally {
          await vm.close()
        }
      }),
      { numRuns: 60 },
    )
  })
})
