// The KVM Userfault probe and the capability number's plumbing (userfault.ts), and the `userfault`
// requirement of harness/gating.ts, on the emulator's profiles (with and without the series).

import { describe, expect, test } from 'vitest'
import { createEmulatorBackend, vmStateOf } from '../../backends/emulator/index.ts'
import type { Backend, Vm } from '../backend.ts'
import { unmet } from '../gating.ts'
import { USERFAULT_CAP_ENV, parseUserfaultCap, probeKvmUserfault, userfaultCap, userfaultCapOf, userfaultSlot } from './userfault.ts'
import { KVM_MEM_USERFAULT } from '../uapi/series.ts'

const REFUSED = 'KVM_SET_USER_MEMORY_REGION2 refuses KVM_MEM_USERFAULT (EINVAL): this kernel lacks KVM Userfault'

/** The emulator with every VM it creates remembered, to see that the probe closed them. */
function watched(profile: string): { kvm: Backend; vms: Vm[] } {
  const kvm = createEmulatorBackend({ profile })
  const vms: Vm[] = []
  const createVm = kvm.createVm.bind(kvm)
  kvm.createVm = async (opts) => {
    const vm = await createVm(opts)
    vms.push(vm)
    return vm
  }
  return { kvm, vms }
}

describe('probeKvmUserfault', () => {
  test('a kernel with the series (userfault-v2, userfault-v3) takes the scratch memslot', async () => {
    for (const profile of ['userfault-v2', 'userfault-v3']) {
      expect(await probeKvmUserfault(createEmulatorBackend({ profile })), profile).toEqual({ supported: true })
    }
  })

  test('a kernel without it: the refusal, with the errno and the ioctl, as the reason tests skip with', async () => {
    for (const profile of ['upstream-6.18', 'pvm-6.18']) {
      expect(await probeKvmUserfault(createEmulatorBackend({ profile })), profile).toEqual({
        supported: false, code: 'EINVAL', op: 'KVM_SET_USER_MEMORY_REGION2', reason: REFUSED,
      })
    }
  })

  test('the scratch VM is closed (and its memslot gone) when the probe resolves', async () => {
    const { kvm, vms } = watched('userfault-v3')
    await probeKvmUserfault(kvm)
    expect(vms).toHaveLength(1)
    await expect(vms[0]!.checkExtension(0)).rejects.toMatchObject({ code: 'EBADF' })
    expect(vmStateOf(vms[0]!).destroyed).toBe(true)
  })

  test('gating: requires({ userfault: true }) skips with the probe\'s reason, and only then', async () => {
    expect(await unmet(createEmulatorBackend({ profile: 'upstream-6.18' }), { userfault: true })).toBe(REFUSED)
    expect(await unmet(createEmulatorBackend({ profile: 'userfault-v2' }), { userfault: true })).toBeUndefined()
  })
})

describe('KVM_CAP_USERFAULT\'s number: --userfault-cap N, KVMCONF_USERFAULT_CAP', () => {
  test('a positive integer is taken; anything else says what the series use', () => {
    expect(parseUserfaultCap('243')).toBe(243)
    expect(parseUserfaultCap(' 239 ')).toBe(239)
    for (const bad of ['', '0', '-1', '2.5', 'v3', '0x10', '99999999999']) {
      expect(parseUserfaultCap(bad), bad).toEqual({ error: expect.stringMatching(/239 in the series' v1\/v2, 243 in v3/) })
    }
  })

  test('the environment: unset or empty is "not told" (null); garbage is a RangeError', () => {
    expect(userfaultCap({})).toBeNull()
    expect(userfaultCap({ [USERFAULT_CAP_ENV]: '' })).toBeNull()
    expect(userfaultCap({ [USERFAULT_CAP_ENV]: '243' })).toBe(243)
    expect(() => userfaultCap({ [USERFAULT_CAP_ENV]: 'x' })).toThrow(RangeError)
  })
})

describe('userfaultSlot', () => {
  test('memory and a clear bitmap of the slot\'s size; set() makes the slot with them', async () => {
    const kvm = createEmulatorBackend({ profile: 'userfault-v3' })
    const vm = await kvm.createVm()
    const s = await userfaultSlot(kvm, vm, { slot: 3, gpa: 0x1000_0000, npages: 70 })
    expect([...await s.bitmap.words()]).toEqual([0n, 0n])
    await s.set(KVM_MEM_USERFAULT)
    const slot = vmStateOf(vm).memslots.get(0, 3)!
    expect({ flags: slot.flags, npages: slot.npages, bitmap: slot.userfaultBitmap, hva: slot.userspaceAddr })
      .toEqual({ flags: KVM_MEM_USERFAULT, npages: 70, bitmap: s.bitmap.addr, hva: s.mem.addr })
    expect(s.pageGpa(69)).toBe(0x1000_0000n + 69n * 4096n)
  })
})

describe('userfaultCapOf', () => {
  test('the number given wins; else the series an emulator profile models; else unknown', async () => {
    const v2 = createEmulatorBackend({ profile: 'userfault-v2' })
    const v3 = createEmulatorBackend({ profile: 'userfault-v3' })
    const upstream = createEmulatorBackend({ profile: 'upstream-6.18' })
    expect(await userfaultCapOf(v2, {})).toBe(239)
    expect(await userfaultCapOf(v3, {})).toBe(243)
    expect(await userfaultCapOf(upstream, {})).toBeNull()
    expect(await userfaultCapOf(v3, { [USERFAULT_CAP_ENV]: '239' })).toBe(239)
    for (const b of [v2, v3, upstream]) await b.close()
  })
})
