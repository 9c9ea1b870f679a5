import { describe, expect, test } from 'vitest'
import { KVM_X86_DEFAULT_VM, KVM_X86_SW_PROTECTED_VM } from '../../harness/uapi/kvm.ts'
import { DEFAULT_PROFILE, PVM_6_18, UPSTREAM_6_18, USERFAULT_V2, USERFAULT_V3, defineProfile, getProfile, profileNames } from './profiles.ts'

describe('profiles', () => {
  test('upstream-6.18 says what the suites are written to', () => {
    expect(getProfile('upstream-6.18')).toMatchObject({
      arch: 'x86_64',
      tdp: true,
      vmTypes: [KVM_X86_DEFAULT_VM, KVM_X86_SW_PROTECTED_VM],
      memoryAttributes: true,
      guestMemfd: true,
      readonlyMem: true,
      nrMemslots: 32764,
      maxVcpus: 4096,
      nrAddressSpaces: 2,
      userfault: null,
    })
  })

  test("pvm-6.18 is 6.18 as the project's machines run it", () => {
    expect(getProfile('pvm-6.18')).toMatchObject({
      release: '6.18',
      tdp: false,
      vmTypes: [KVM_X86_DEFAULT_VM],
      memoryAttributes: false,
      guestMemfd: true,
      readonlyMem: true,
      nrMemslots: 32764,
      nrAddressSpaces: 1,
      maxVcpus: 1024,
      supportedQuirks: 0x5ff,
      userfault: null,
    })
  })

  test('userfault-v2 and userfault-v3 are upstream-6.18 plus one version of the KVM Userfault series', () => {
    for (const [name, series] of [['userfault-v2', 'v2'], ['userfault-v3', 'v3']] as const) {
      const { name: _n, description: _d, userfault, ...rest } = getProfile(name)
      const { name: _un, description: _ud, userfault: none, ...upstream } = UPSTREAM_6_18
      expect(rest, name).toEqual(upstream)
      expect(none).toBeNull()
      expect(userfault, name).toEqual({ series })
    }
    expect([USERFAULT_V2.name, USERFAULT_V3.name]).toEqual(['userfault-v2', 'userfault-v3'])
  })

  test('the default is userfault-v3: upstream 6.18 plus the latest posted series, so a plain run covers every suite', () => {
    expect(DEFAULT_PROFILE).toBe('userfault-v3')
  })

  test('an unknown name throws and lists the known ones', () => {
    expect(() => getProfile('upstream-6.17')).toThrow(
      /unknown emulator profile 'upstream-6.17'.*upstream-6.18, pvm-6.18, userfault-v2, userfault-v3/,
    )
    expect(profileNames()).toEqual(['upstream-6.18', 'pvm-6.18', 'userfault-v2', 'userfault-v3'])
  })

  test('a variant is a base with options overridden, frozen', () => {
    const variant = defineProfile(UPSTREAM_6_18, { name: 'no-gmem', description: 'test', guestMemfd: false })
    expect(variant).toMatchObject({ ...UPSTREAM_6_18, name: 'no-gmem', description: 'test', guestMemfd: false })
    expect(Object.isFrozen(variant)).toBe(true)
    expect(Object.isFrozen(variant.vmTypes)).toBe(true)
    expect(PVM_6_18.guestMemfd).toBe(true) // bases are not touched
  })

  test('the userfault option is a place for a series, null on every released kernel', () => {
    const series = defineProfile(UPSTREAM_6_18, { name: 'uf', description: 'test', userfault: { series: 'v3' } })
    expect(series.userfault).toEqual({ series: 'v3' })
  })

  test('nonsensical options are refused', () => {
    expect(() => defineProfile(UPSTREAM_6_18, { name: 'x', description: 'x', vmTypes: [] })).toThrow(/vmTypes/)
    expect(() => defineProfile(UPSTREAM_6_18, { name: 'x', description: 'x', nrAddressSpaces: 0 })).toThrow(/nrAddressSpaces/)
  })
})
