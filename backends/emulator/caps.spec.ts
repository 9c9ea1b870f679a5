import { describe, expect, test } from 'vitest'
import {
  KVM_CAP_DISABLE_QUIRKS2,
  KVM_CAP_GUEST_MEMFD,
  KVM_CAP_GUEST_MEMFD_FLAGS,
  KVM_CAP_MAX_VCPUS,
  KVM_CAP_MEMORY_ATTRIBUTES,
  KVM_CAP_MEMORY_FAULT_INFO,
  KVM_CAP_NR_MEMSLOTS,
  KVM_CAP_PRE_FAULT_MEMORY,
  KVM_CAP_USER_MEMORY2,
  KVM_CAP_VM_TYPES,
  KVM_CAP_X86_APIC_BUS_CYCLES_NS,
  KVM_CAP_X86_GUEST_MODE,
  KVM_X86_DEFAULT_VM,
  KVM_X86_SW_PROTECTED_VM,
} from '../../harness/uapi/kvm.ts'
import { KVM_CAP_MULTI_ADDRESS_SPACE, KVM_CAP_READONLY_MEM, KVM_CAP_USER_MEMORY, checkExtension } from './caps.ts'
import { createEmulatorBackend } from './index.ts'
import { PVM_6_18, UPSTREAM_6_18, defineProfile } from './profiles.ts'

const CAPS = {
  KVM_CAP_USER_MEMORY2,
  KVM_CAP_MEMORY_FAULT_INFO,
  KVM_CAP_NR_MEMSLOTS,
  KVM_CAP_MAX_VCPUS,
  KVM_CAP_GUEST_MEMFD,
  KVM_CAP_GUEST_MEMFD_FLAGS,
  KVM_CAP_MEMORY_ATTRIBUTES,
  KVM_CAP_VM_TYPES,
  KVM_CAP_PRE_FAULT_MEMORY,
  KVM_CAP_DISABLE_QUIRKS2,
  KVM_CAP_USER_MEMORY,
  KVM_CAP_READONLY_MEM,
  KVM_CAP_MULTI_ADDRESS_SPACE,
  KVM_CAP_X86_APIC_BUS_CYCLES_NS,
  KVM_CAP_X86_GUEST_MODE,
}

function table(profile: typeof UPSTREAM_6_18, vmType: number | null): Record<string, number> {
  return Object.fromEntries(Object.entries(CAPS).map(([name, cap]) => [name, checkExtension(profile, vmType, cap)]))
}

describe('KVM_CHECK_EXTENSION, upstream-6.18', () => {
  const common = {
    KVM_CAP_USER_MEMORY2: 1,
    KVM_CAP_MEMORY_FAULT_INFO: 1,
    KVM_CAP_NR_MEMSLOTS: 32764,
    KVM_CAP_MAX_VCPUS: 4096,
    KVM_CAP_GUEST_MEMFD: 1,
    KVM_CAP_VM_TYPES: 0b11,
    KVM_CAP_PRE_FAULT_MEMORY: 1,
    KVM_CAP_DISABLE_QUIRKS2: 0x3ff,
    KVM_CAP_USER_MEMORY: 1,
    KVM_CAP_READONLY_MEM: 1,
    KVM_CAP_X86_APIC_BUS_CYCLES_NS: 1,
    KVM_CAP_X86_GUEST_MODE: 1,
  }

  test('the system fd: INIT_SHARED offered, PRIVATE attributes supported', () => {
    expect(table(UPSTREAM_6_18, null)).toEqual({
      ...common,
      KVM_CAP_GUEST_MEMFD_FLAGS: 3,
      KVM_CAP_MEMORY_ATTRIBUTES: 8,
      KVM_CAP_MULTI_ADDRESS_SPACE: 2,
    })
  })

  test('a default VM: guest_memfd with INIT_SHARED, no attributes, SMM address space', () => {
    expect(table(UPSTREAM_6_18, KVM_X86_DEFAULT_VM)).toEqual({
      ...common,
      KVM_CAP_GUEST_MEMFD_FLAGS: 3,
      KVM_CAP_MEMORY_ATTRIBUTES: 0,
      KVM_CAP_MULTI_ADDRESS_SPACE: 2,
    })
  })

  test('a SW_PROTECTED VM: private memory, so no INIT_SHARED and one address space', () => {
    expect(table(UPSTREAM_6_18, KVM_X86_SW_PROTECTED_VM)).toEqual({
      ...common,
      KVM_CAP_GUEST_MEMFD_FLAGS: 1,
      KVM_CAP_MEMORY_ATTRIBUTES: 8,
      KVM_CAP_MULTI_ADDRESS_SPACE: 1,
    })
  })

  test('anything else is 0', () => {
    for (const cap of [0, 1, 2, 228, 239, 243, 245, 246, 247, 1000, -1]) {
      expect(checkExtension(UPSTREAM_6_18, null, cap), `cap ${cap}`).toBe(0)
    }
  })
})

describe('KVM_CHECK_EXTENSION, pvm-6.18 (values measured on the project host, caps 228..247)', () => {
  test('system and default VM answer alike', () => {
    const expected = {
      KVM_CAP_USER_MEMORY2: 1,
      KVM_CAP_MEMORY_FAULT_INFO: 1,
      KVM_CAP_NR_MEMSLOTS: 32764,
      KVM_CAP_MAX_VCPUS: 1024,
      KVM_CAP_GUEST_MEMFD: 1,
      KVM_CAP_GUEST_MEMFD_FLAGS: 3,
      KVM_CAP_MEMORY_ATTRIBUTES: 0,
      KVM_CAP_VM_TYPES: 1,
      KVM_CAP_PRE_FAULT_MEMORY: 0,
      KVM_CAP_DISABLE_QUIRKS2: 1535,
      KVM_CAP_USER_MEMORY: 1,
      KVM_CAP_READONLY_MEM: 1,
      KVM_CAP_MULTI_ADDRESS_SPACE: 0,
      KVM_CAP_X86_APIC_BUS_CYCLES_NS: 1,
      KVM_CAP_X86_GUEST_MODE: 1,
    }
    expect(table(PVM_6_18, null)).toEqual(expected)
    expect(table(PVM_6_18, KVM_X86_DEFAULT_VM)).toEqual(expected)
  })
})

describe('KVM_CHECK_EXTENSION follows the options', () => {
  test('without guest_memfd both guest_memfd caps are 0', () => {
    const p = defineProfile(UPSTREAM_6_18, { name: 'x', description: 'x', guestMemfd: false })
    expect(checkExtension(p, KVM_X86_DEFAULT_VM, KVM_CAP_GUEST_MEMFD)).toBe(0)
    expect(checkExtension(p, null, KVM_CAP_GUEST_MEMFD_FLAGS)).toBe(0)
  })

  test('without read-only memory KVM_CAP_READONLY_MEM is 0', () => {
    const p = defineProfile(UPSTREAM_6_18, { name: 'x', description: 'x', readonlyMem: false })
    expect(checkExtension(p, null, KVM_CAP_READONLY_MEM)).toBe(0)
  })
})

describe('through the contract', () => {
  test('/dev/kvm and a VM of each type answer from the same table', async () => {
    const kvm = createEmulatorBackend()
    expect(await kvm.checkExtension(KVM_CAP_GUEST_MEMFD_FLAGS)).toBe(3)
    const vm = await kvm.createVm({ type: KVM_X86_SW_PROTECTED_VM })
    expect(await vm.checkExtension(KVM_CAP_GUEST_MEMFD_FLAGS)).toBe(1)
    expect(await vm.checkExtension(KVM_CAP_MEMORY_ATTRIBUTES)).toBe(8)
    const dflt = await kvm.createVm()
    expect(await dflt.checkExtension(KVM_CAP_MEMORY_ATTRIBUTES)).toBe(0)
    await kvm.close()
  })
})
