import { describe, expect, test } from 'vitest'
import type { Backend, Feature } from './backend.ts'
import { requires, supportedVmTypes, unmet } from './gating.ts'
import { KVM_CAP_GUEST_MEMFD, KVM_CAP_GUEST_MEMFD_FLAGS, KVM_CAP_VM_TYPES, KVM_X86_SW_PROTECTED_VM } from './uapi/kvm.ts'

function backendWith(caps: Record<number, number>, features: Feature[] = []): Backend {
  return {
    name: 'fake',
    checkExtension: async (cap: number) => caps[cap] ?? 0,
    info: async () => ({ features }),
  } as unknown as Backend
}

describe('requires', () => {
  test('a missing capability skips with its name and value', async () => {
    const kvm = backendWith({ [KVM_CAP_GUEST_MEMFD]: 0 })
    const skips: string[] = []
    const skip = (note?: string): never => {
      skips.push(note ?? '')
      throw new Error('skipped')
    }
    await expect(requires({ kvm, skip }, { cap: KVM_CAP_GUEST_MEMFD })).rejects.toThrow('skipped')
    expect(skips).toEqual(['KVM_CAP_GUEST_MEMFD = 0 on this fake backend, the test needs non-zero'])
  })

  test('a present capability does not skip', async () => {
    const kvm = backendWith({ [KVM_CAP_GUEST_MEMFD]: 1 })
    const skip = (): never => {
      throw new Error('must not skip')
    }
    await expect(requires({ kvm, skip }, { cap: KVM_CAP_GUEST_MEMFD })).resolves.toBeUndefined()
  })

  test('masks, VM types and features name what is missing', async () => {
    const kvm = backendWith({ [KVM_CAP_GUEST_MEMFD_FLAGS]: 1, [KVM_CAP_VM_TYPES]: 1 })
    expect(await unmet(kvm, { cap: { cap: KVM_CAP_GUEST_MEMFD_FLAGS, mask: 3 } })).toBe(
      'KVM_CAP_GUEST_MEMFD_FLAGS = 1 on this fake backend, the test needs bits 0x3',
    )
    expect(await unmet(kvm, { vmType: KVM_X86_SW_PROTECTED_VM })).toBe(
      'KVM_CAP_VM_TYPES = 0x1 lacks KVM_X86_SW_PROTECTED_VM',
    )
    expect(await unmet(kvm, { feature: 'vcpu' })).toBe("the fake backend cannot do 'vcpu' yet")
    expect(await unmet(backendWith({}, ['vcpu']), { feature: 'vcpu' })).toBeUndefined()
  })

  test('supportedVmTypes reads the bitmask, and 0 means the default VM only', async () => {
    expect(await supportedVmTypes(backendWith({ [KVM_CAP_VM_TYPES]: 0b11 }))).toEqual([0, 1])
    expect(await supportedVmTypes(backendWith({ [KVM_CAP_VM_TYPES]: 0 }))).toEqual([0])
  })
})
