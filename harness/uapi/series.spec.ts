// Pins series.ts against shared/reference/upstream-selftests.md §0.1 and §F.2.

import { describe, test, expect } from 'vitest'
import { KVM_MEM_USERFAULT, KVM_MEMORY_EXIT_FLAG_USERFAULT, USERFAULT_SERIES } from './series.ts'
import {
  KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED, KVM_CAP_ARM_WRITABLE_IMP_ID_REGS, KVM_CAP_PRE_FAULT_MEMORY, KVMIO,
  KVM_MEM_GUEST_MEMFD, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY, KVM_MEMORY_EXIT_FLAG_PRIVATE,
} from './kvm.ts'
import { _IOR } from './ioc.ts'
import { kvm_userspace_memory_region2 } from './memory-region.ts'

describe('series.ts', () => {
  test('KVM_CAP_USERFAULT by version: RFC 236, v1 239, v2 239, v3 243', () => {
    expect(USERFAULT_SERIES.rfc.capUserfault).toBe(236)
    expect(USERFAULT_SERIES.v1.capUserfault).toBe(239)
    expect(USERFAULT_SERIES.v2.capUserfault).toBe(239)
    expect(USERFAULT_SERIES.v3.capUserfault).toBe(243)
  })

  test('each cap number collides with a later upstream capability, so support is probed, not looked up', () => {
    expect(USERFAULT_SERIES.rfc.capUserfault).toBe(KVM_CAP_PRE_FAULT_MEMORY)
    expect(USERFAULT_SERIES.v2.capUserfault).toBe(KVM_CAP_ARM_WRITABLE_IMP_ID_REGS)
    expect(USERFAULT_SERIES.v3.capUserfault).toBe(KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED)
  })

  test('KVM_MEM_USERFAULT = 8, a bit no upstream memslot flag uses', () => {
    expect(KVM_MEM_USERFAULT).toBe(8)
    expect(KVM_MEM_USERFAULT & (KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY | KVM_MEM_GUEST_MEMFD)).toBe(0)
    expect(USERFAULT_SERIES.rfc.memUserfault).toBeNull()
    for (const v of ['v1', 'v2', 'v3'] as const) expect(USERFAULT_SERIES[v].memUserfault).toBe(8)
  })

  test('KVM_MEMORY_EXIT_FLAG_USERFAULT = 16 in every version, beside PRIVATE (8)', () => {
    expect(KVM_MEMORY_EXIT_FLAG_USERFAULT).toBe(16n)
    expect(KVM_MEMORY_EXIT_FLAG_USERFAULT & KVM_MEMORY_EXIT_FLAG_PRIVATE).toBe(0n)
    for (const s of Object.values(USERFAULT_SERIES)) expect(s.memoryExitFlagUserfault).toBe(16n)
  })

  test('userfault_bitmap sits at byte 48 of kvm_userspace_memory_region2 (v1-v3)', () => {
    expect(USERFAULT_SERIES.rfc.userfaultBitmapOffset).toBeNull()
    for (const v of ['v1', 'v2', 'v3'] as const) {
      expect(USERFAULT_SERIES[v].userfaultBitmapOffset).toBe(48)
      expect(USERFAULT_SERIES[v].userfaultBitmapOffset).toBe(kvm_userspace_memory_region2.fields.userfaultBitmap.offset)
    }
  })

  test('RFC only: the USERFAULT attribute, the enable args and KVM_READ_USERFAULT', () => {
    const rfc = USERFAULT_SERIES.rfc
    expect(rfc.memoryAttributeUserfault).toBe(16n)
    expect(rfc.enable).toEqual({ enable: 1n, disable: 2n })
    // _IOR(KVMIO, 0xd5, struct kvm_fault { __u64 address; })
    expect(rfc.readUserfaultIoctl).toBe(_IOR(KVMIO, 0xd5, 8))
    expect(rfc.readUserfaultIoctl).toBe(0x8008aed5)
    for (const v of ['v1', 'v2', 'v3'] as const) {
      expect(USERFAULT_SERIES[v]).toMatchObject({ memoryAttributeUserfault: null, enable: null, readUserfaultIoctl: null })
    }
  })

  test('each entry is keyed by its own version', () => {
    for (const [key, s] of Object.entries(USERFAULT_SERIES)) expect(s.version).toBe(key)
  })
})
