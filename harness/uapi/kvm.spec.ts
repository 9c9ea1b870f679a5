// Pins kvm.ts: every ioctl number against the _IOC computation from its argument's size (the layouts in
// this directory, or the x86 struct sizes below), and the capability and exit numbers against
// shared/reference/upstream-selftests.md §0.3.

import { describe, test, expect } from 'vitest'
import * as kvm from './kvm.ts'
import { KVMIO } from './kvm.ts'
import { _IO, _IOC_TYPE, _IOR, _IOW, _IOWR } from './ioc.ts'
import { kvm_create_guest_memfd } from './create-guest-memfd.ts'
import { kvm_dirty_log } from './dirty-log.ts'
import { kvm_enable_cap } from './enable-cap.ts'
import { kvm_memory_attributes } from './memory-attributes.ts'
import { kvm_userspace_memory_region, kvm_userspace_memory_region2 } from './memory-region.ts'
import { kvm_pre_fault_memory } from './pre-fault-memory.ts'

/** arch/x86/include/uapi/asm/kvm.h: struct kvm_regs, 18 u64 (rax..r15, rip, rflags). */
const SIZEOF_KVM_REGS = 144
/** struct kvm_sregs: 8 kvm_segment (24) + 2 kvm_dtable (16) + 7 u64 + interrupt_bitmap[4] u64. */
const SIZEOF_KVM_SREGS = 8 * 24 + 2 * 16 + 7 * 8 + 4 * 8

// [name, the header's definition computed here, the number as a literal]
const IOCTLS: [keyof typeof kvm, number, number][] = [
  ['KVM_GET_API_VERSION', _IO(KVMIO, 0x00), 0xae00],
  ['KVM_CREATE_VM', _IO(KVMIO, 0x01), 0xae01],
  ['KVM_CHECK_EXTENSION', _IO(KVMIO, 0x03), 0xae03],
  ['KVM_GET_VCPU_MMAP_SIZE', _IO(KVMIO, 0x04), 0xae04],
  ['KVM_CREATE_VCPU', _IO(KVMIO, 0x41), 0xae41],
  ['KVM_GET_DIRTY_LOG', _IOW(KVMIO, 0x42, kvm_dirty_log.size), 0x4010ae42],
  ['KVM_SET_NR_MMU_PAGES', _IO(KVMIO, 0x44), 0xae44],
  ['KVM_SET_USER_MEMORY_REGION', _IOW(KVMIO, 0x46, kvm_userspace_memory_region.size), 0x4020ae46],
  ['KVM_SET_USER_MEMORY_REGION2', _IOW(KVMIO, 0x49, kvm_userspace_memory_region2.size), 0x40a0ae49],
  ['KVM_RUN', _IO(KVMIO, 0x80), 0xae80],
  ['KVM_GET_REGS', _IOR(KVMIO, 0x81, SIZEOF_KVM_REGS), 0x8090ae81],
  ['KVM_SET_REGS', _IOW(KVMIO, 0x82, SIZEOF_KVM_REGS), 0x4090ae82],
  ['KVM_GET_SREGS', _IOR(KVMIO, 0x83, SIZEOF_KVM_SREGS), 0x8138ae83],
  ['KVM_SET_SREGS', _IOW(KVMIO, 0x84, SIZEOF_KVM_SREGS), 0x4138ae84],
  ['KVM_ENABLE_CAP', _IOW(KVMIO, 0xa3, kvm_enable_cap.size), 0x4068aea3],
  ['KVM_SET_MEMORY_ATTRIBUTES', _IOW(KVMIO, 0xd2, kvm_memory_attributes.size), 0x4020aed2],
  ['KVM_CREATE_GUEST_MEMFD', _IOWR(KVMIO, 0xd4, kvm_create_guest_memfd.size), 0xc040aed4],
  ['KVM_PRE_FAULT_MEMORY', _IOWR(KVMIO, 0xd5, kvm_pre_fault_memory.size), 0xc040aed5],
]

describe('kvm.ts', () => {
  test('struct kvm_regs is 144 bytes and struct kvm_sregs 312', () => {
    expect(SIZEOF_KVM_REGS).toBe(144)
    expect(SIZEOF_KVM_SREGS).toBe(312)
  })

  test.each(IOCTLS)('%s = _IOC(...) = %#x', (name, computed, literal) => {
    expect(computed).toBe(literal)
    expect(kvm[name]).toBe(computed)
  })

  test('every KVMIO ioctl number exported by kvm.ts is pinned above', () => {
    const exported = Object.entries(kvm)
      .filter(([, v]) => typeof v === 'number' && Number.isInteger(v) && v >= 0x100 && v <= 0xffff_ffff)
      .filter(([, v]) => _IOC_TYPE(v as number) === KVMIO)
      .map(([name]) => name)
      .sort()
    expect(exported).toEqual(IOCTLS.map(([name]) => name).sort())
  })

  test('capability numbers (§0.3)', () => {
    expect({
      NR_MEMSLOTS: kvm.KVM_CAP_NR_MEMSLOTS, MAX_VCPUS: kvm.KVM_CAP_MAX_VCPUS,
      DISABLE_QUIRKS2: kvm.KVM_CAP_DISABLE_QUIRKS2, USER_MEMORY2: kvm.KVM_CAP_USER_MEMORY2,
      MEMORY_FAULT_INFO: kvm.KVM_CAP_MEMORY_FAULT_INFO, MEMORY_ATTRIBUTES: kvm.KVM_CAP_MEMORY_ATTRIBUTES,
      GUEST_MEMFD: kvm.KVM_CAP_GUEST_MEMFD, VM_TYPES: kvm.KVM_CAP_VM_TYPES,
      PRE_FAULT_MEMORY: kvm.KVM_CAP_PRE_FAULT_MEMORY, ARM_WRITABLE_IMP_ID_REGS: kvm.KVM_CAP_ARM_WRITABLE_IMP_ID_REGS,
      ARM_CACHEABLE_PFNMAP_SUPPORTED: kvm.KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED,
      GUEST_MEMFD_FLAGS: kvm.KVM_CAP_GUEST_MEMFD_FLAGS,
    }).toEqual({
      NR_MEMSLOTS: 10, MAX_VCPUS: 66, DISABLE_QUIRKS2: 213, USER_MEMORY2: 231, MEMORY_FAULT_INFO: 232,
      MEMORY_ATTRIBUTES: 233, GUEST_MEMFD: 234, VM_TYPES: 235, PRE_FAULT_MEMORY: 236,
      ARM_WRITABLE_IMP_ID_REGS: 239, ARM_CACHEABLE_PFNMAP_SUPPORTED: 243, GUEST_MEMFD_FLAGS: 244,
    })
  })

  test('KVM_CAP_NAMES names every KVM_CAP_* export, by its own name', () => {
    const caps = Object.entries(kvm).filter(([name]) => name.startsWith('KVM_CAP_') && name !== 'KVM_CAP_NAMES')
    for (const [name, value] of caps) expect(kvm.KVM_CAP_NAMES[value as number]).toBe(name)
    expect(Object.keys(kvm.KVM_CAP_NAMES)).toHaveLength(caps.length)
  })

  test('exit reasons and memory flags (§0.3, §G)', () => {
    expect([kvm.KVM_EXIT_IO, kvm.KVM_EXIT_MMIO, kvm.KVM_EXIT_FAIL_ENTRY, kvm.KVM_EXIT_SHUTDOWN,
      kvm.KVM_EXIT_INTERNAL_ERROR, kvm.KVM_EXIT_MEMORY_FAULT]).toEqual([2, 6, 9, 8, 17, 39])
    expect([kvm.KVM_MEM_LOG_DIRTY_PAGES, kvm.KVM_MEM_READONLY, kvm.KVM_MEM_GUEST_MEMFD]).toEqual([1, 2, 4])
    expect(kvm.KVM_MEMORY_EXIT_FLAG_PRIVATE).toBe(8n)
    expect(kvm.KVM_MEMORY_ATTRIBUTE_PRIVATE).toBe(8n)
    expect([kvm.GUEST_MEMFD_FLAG_MMAP, kvm.GUEST_MEMFD_FLAG_INIT_SHARED]).toEqual([1n, 2n])
  })
})
