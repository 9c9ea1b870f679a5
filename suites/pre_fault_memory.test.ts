// Port of tools/testing/selftests/kvm/pre_fault_memory_test.c (upstream-selftests.md §E.2) in its three
// versions: (a) upstream's, (b) with the slot deleted and re-added while the prefault runs, (c) the arm64
// proposal's repeated prefault of the same range. Each runs for the default VM and, on x86, for a
// KVM_X86_SW_PROTECTED_VM with shared and with private (guest_memfd) memory; every call checks
// `(size < prev) XOR (ret < 0)`, and the guest then reads every page of the slot.
//
// Beyond upstream ("kvmconf additions"): the argument checks the selftest never makes. They need only the
// ioctl, not KVM_CAP_PRE_FAULT_MEMORY, so they also run where the capability is 0 but the ioctl exists
// (the project's PVM machines: valid arguments give EOPNOTSUPP, invalid ones EINVAL).

import type { Backend, HostMapping, PreFaultResult, Vcpu, Vm } from '../harness/backend.ts'
import { requires, requireThat, type GateContext } from '../harness/gating.ts'
import { IDENTITY_MAP_END } from '../harness/guest-program.ts'
import { describeExit, getUcall, guestDone } from '../harness/kvm-util/ucall.ts'
import { describe, expect, test } from '../harness/test.ts'
import {
  KVM_CAP_GUEST_MEMFD,
  KVM_CAP_MEMORY_ATTRIBUTES,
  KVM_CAP_PRE_FAULT_MEMORY,
  KVM_MEM_GUEST_MEMFD,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  KVM_X86_DEFAULT_VM,
  KVM_X86_SW_PROTECTED_VM,
} from '../harness/uapi/kvm.ts'
import { hex } from '../harness/hex.ts'

const PAGE = 4096n
const SZ_2M = 0x20_0000n
const TEST_SIZE = SZ_2M + PAGE
const TEST_NPAGES = Number(TEST_SIZE / PAGE) // 513
const TEST_SLOT = 10
/**
 * upstream: gpa = (max_gfn - TEST_NPAGES) * page, aligned down to 2 MiB. A guest program's GVA = GPA map
 * ends at 64 GiB (the MAXPHYADDR KVM assumes without KVM_SET_CPUID2, harness/guest-program.ts), so
 * max_gfn is that of 36 physical address bits: 0xffffc00000.
 */
const MAX_GFN = IDENTITY_MAP_END / PAGE - 1n
const BASE_GPA = ((MAX_GFN - BigInt(TEST_NPAGES)) * PAGE) & ~(SZ_2M - 1n)
const U64_MAX = (1n << 64n) - 1n

const describeResult = (r: PreFaultResult) =>
  `${r.ok ? 'ret 0' : `ret -1 (${r.error.code})`}, gpa ${hex(r.gpa)}, size ${hex(r.size)}`

/** The variants upstream's main() runs. */
const VARIANTS = [
  { name: 'test_pre_fault_memory(KVM_X86_DEFAULT_VM, shared)', vmType: KVM_X86_DEFAULT_VM, private: false },
  { name: 'test_pre_fault_memory(KVM_X86_SW_PROTECTED_VM, shared)', vmType: KVM_X86_SW_PROTECTED_VM, private: false },
  { name: 'test_pre_fault_memory(KVM_X86_SW_PROTECTED_VM, private)', vmType: KVM_X86_SW_PROTECTED_VM, private: true },
] as const

type Variant = (typeof VARIANTS)[number]

interface TestVm {
  vm: Vm
  vcpu: Vcpu
  /** Deletes TEST_SLOT, and adds it again as it was made. */
  deleteSlot(): Promise<void>
  addSlot(): Promise<void>
}

/** TEST_REQUIRE(KVM_CAP_PRE_FAULT_MEMORY), then what the variant's VM needs ("Skipping tests for vm_type"). */
async function gate(t: GateContext, v: Variant): Promise<void> {
  await requires(t, { cap: KVM_CAP_PRE_FAULT_MEMORY }, { feature: 'vcpu' }, { vmType: v.vmType })
  if (v.private) {
    await requires(t, { cap: KVM_CAP_GUEST_MEMFD }, { cap: { cap: KVM_CAP_MEMORY_ATTRIBUTES, mask: KVM_MEMORY_ATTRIBUTE_PRIVATE } })
  }
}

/**
 * __test_pre_fault_memory()'s setup: a VM of the variant's type with one vCPU whose guest reads a u64 of
 * every page of the slot and then GUEST_DONE; TEST_SLOT at BASE_GPA over TEST_NPAGES anonymous pages (the
 * private variant binds a guest_memfd as well and makes the whole range private).
 */
async function createTestVm(kvm: Backend, v: Variant): Promise<TestVm> {
  const vm = await kvm.createVm({ type: v.vmType })
  const vcpu = await vm.createVcpu(0)
  await vcpu.loadProgram({
    steps: [
      { op: 'touch_pages', gva: BASE_GPA, pages: TEST_NPAGES, stride: Number(PAGE), write: false, value: 0 },
      guestDone(),
    ],
  })
  const mem: HostMapping = await kvm.mmap({ size: TEST_SIZE, backing: 'anonymous' })
  const gmem = v.private ? await vm.createGuestMemfd({ size: TEST_SIZE }) : null
  const region = (memorySize: bigint) =>
    vm.setUserMemoryRegion2({
      slot: TEST_SLOT, flags: gmem ? KVM_MEM_GUEST_MEMFD : 0, guestPhysAddr: BASE_GPA, memorySize,
      userspaceAddr: mem.addr, guestMemfd: gmem?.fd ?? 0, guestMemfdOffset: 0,
    })
  await region(TEST_SIZE)
  if (v.private) {
    await vm.setMemoryAttributes({ address: BASE_GPA, size: TEST_SIZE, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE })
  }
  return { vm, vcpu, deleteSlot: () => region(0n), addSlot: () => region(TEST_SIZE) }
}

/** One KVM_PRE_FAULT_MEMORY call, with upstream's invariant: success consumes something, failure nothing. */
async function preFaultOnce(vcpu: Vcpu, range: { gpa: bigint; size: bigint }): Promise<PreFaultResult> {
  const r = await vcpu.preFaultMemory(range)
  const consumed = r.size < range.size
  expect(
    consumed !== !r.ok,
    `KVM_PRE_FAULT_MEMORY [${hex(range.gpa)}, +${hex(range.size)}): (size < prev) XOR (ret < 0) broken: ${describeResult(r)}`,
  ).toBe(true)
  return r
}

/** How the last call must have ended: `expectedLeft` bytes left, and ENOENT unless nothing is. */
function expectLeft(r: PreFaultResult, expectedLeft: bigint, what: string): void {
  expect(r.size, `${what}: bytes left (${describeResult(r)})`).toBe(expectedLeft)
  if (expectedLeft === 0n) {
    expect(r.ok, `${what}: ${describeResult(r)}`).toBe(true)
  } else {
    // No memslot: the fault is RET_PF_EMULATE, which KVM_PRE_FAULT_MEMORY reports as ENOENT.
    expect(r.ok ? 'success' : r.error.code, `${what}: ${describeResult(r)}`).toBe('ENOENT')
  }
}

/** Version (a)'s pre_fault_memory(): reissue while it makes progress or is interrupted. */
async function preFaultMemory(t: TestVm, offset: bigint, size: bigint, expectedLeft: bigint): Promise<void> {
  let range = { gpa: BASE_GPA + offset, size }
  let r: PreFaultResult
  do {
    r = await preFaultOnce(t.vcpu, range)
    range = { gpa: r.gpa, size: r.size }
  } while ((r.ok && r.size !== 0n) || (!r.ok && r.error.code === 'EINTR'))
  expectLeft(r, expectedLeft, `prefault of [base + ${hex(offset)}, +${hex(size)})`)
}

/**
 * Version (b)'s pre_fault_memory(): a worker deletes TEST_SLOT once the prefault is under way and re-adds
 * it when told. After the first result (whatever it was) the slot is re-added and, if anything is left,
 * the call reissued, for a stable result (and to avoid a random EAGAIN); never with size 0, which is EINVAL.
 */
async function preFaultMemoryRacingDelete(t: TestVm, offset: bigint, size: bigint, expectedLeft: bigint): Promise<void> {
  let prefaultReady!: () => void
  let recreateSlot!: () => void
  const ready = new Promise<void>((resolve) => (prefaultReady = resolve))
  const recreate = new Promise<void>((resolve) => (recreateSlot = resolve))
  const worker = (async () => {
    await ready
    await t.deleteSlot()
    await recreate
    await t.addSlot()
  })()
  prefaultReady()

  let range = { gpa: BASE_GPA + offset, size }
  let recreated = false
  let r: PreFaultResult
  for (;;) {
    r = await preFaultOnce(t.vcpu, range)
    range = { gpa: r.gpa, size: r.size }
    if (!r.ok && r.error.code === 'EINTR') continue
    if (!recreated) {
      recreateSlot()
      await worker
      recreated = true
      if (r.size !== 0n) continue
    }
    if (r.ok && r.size !== 0n) continue
    break
  }
  expectLeft(r, expectedLeft, `prefault of [base + ${hex(offset)}, +${hex(size)}) racing a slot deletion`)
}

/** The guest reads every page of the slot: upstream's vcpu_run() expecting UCALL_DONE. */
async function runGuest(t: TestVm): Promise<void> {
  const exit = await t.vcpu.run({ timeoutMs: 30_000 })
  expect(getUcall(exit), `the guest reading all ${TEST_NPAGES} pages: ${describeExit(exit)}`).toEqual({ cmd: 'done' })
}

describe('pre_fault_memory_test', () => {
  for (const v of VARIANTS) {
    test(v.name, async ({ kvm, skip }) => {
      await gate({ kvm, skip }, v)
      const t = await createTestVm(kvm, v)
      await preFaultMemory(t, 0n, SZ_2M, 0n)
      await preFaultMemory(t, SZ_2M, PAGE * 2n, PAGE)
      await preFaultMemory(t, TEST_SIZE, PAGE, PAGE)
      await runGuest(t)
    })
  }
})

describe('pre_fault_memory_test (slot deleted and re-added during the prefault)', () => {
  for (const v of VARIANTS) {
    test(v.name, async ({ kvm, skip }) => {
      await gate({ kvm, skip }, v)
      const t = await createTestVm(kvm, v)
      await preFaultMemoryRacingDelete(t, 0n, SZ_2M, 0n)
      await preFaultMemoryRacingDelete(t, SZ_2M, PAGE * 2n, PAGE)
      await preFaultMemoryRacingDelete(t, TEST_SIZE, PAGE, PAGE)
      await runGuest(t)
    })
  }
})

describe('pre_fault_memory_test (the same range again, arm64 proposal)', () => {
  for (const v of VARIANTS) {
    test(v.name, async ({ kvm, skip }) => {
      await gate({ kvm, skip }, v)
      const t = await createTestVm(kvm, v)
      await preFaultMemory(t, 0n, SZ_2M, 0n)
      // An already mapped range counts as progress: the whole range again, still nothing left.
      await preFaultMemory(t, 0n, SZ_2M, 0n)
      await preFaultMemory(t, SZ_2M, PAGE * 2n, PAGE)
      await preFaultMemory(t, TEST_SIZE, PAGE, PAGE)
      await runGuest(t)
    })
  }
})

/** A VM and vCPU with TEST_SLOT in place, where KVM_PRE_FAULT_MEMORY exists (ENOTTY skips). */
async function validationVcpu(t: GateContext): Promise<Vcpu> {
  const vm = await t.kvm.createVm()
  const mem = await t.kvm.mmap({ size: TEST_SIZE, backing: 'anonymous' })
  // A memslot first: a shadow-paging VM without one has no MMU pages, and its kvm_mmu_reload() fails
  // with ENOSPC before KVM_PRE_FAULT_MEMORY looks any further (measured on the PVM host).
  await vm.setUserMemoryRegion({ slot: TEST_SLOT, flags: 0, guestPhysAddr: BASE_GPA, memorySize: TEST_SIZE, userspaceAddr: mem.addr })
  const vcpu = await vm.createVcpu(0)
  const probe = await vcpu.preFaultMemory({ gpa: BASE_GPA, size: PAGE, flags: 1 })
  requireThat(t, probe.ok || probe.error.code !== 'ENOTTY', 'KVM_PRE_FAULT_MEMORY does not exist on this kernel (ENOTTY)')
  return vcpu
}

/** The call failed with `code` and left the struct as it was. */
async function expectPreFaultErrno(vcpu: Vcpu, range: { gpa: bigint; size: bigint; flags?: bigint }, code: string, what: string): Promise<void> {
  const r = await vcpu.preFaultMemory(range)
  const got = r.ok ? `success (${describeResult(r)})` : r.error.code
  expect(got, `KVM_PRE_FAULT_MEMORY ${what}: expected ${code}`).toBe(code)
  expect({ gpa: r.gpa, size: r.size }, `KVM_PRE_FAULT_MEMORY ${what}: the struct is left as it was`).toEqual({ gpa: range.gpa, size: range.size })
}

describe('kvmconf additions', () => {
  test('KVM_PRE_FAULT_MEMORY with flags is EINVAL', async ({ kvm, skip }) => {
    const vcpu = await validationVcpu({ kvm, skip })
    for (const flags of [1n, 2n, 1n << 63n, U64_MAX]) {
      await expectPreFaultErrno(vcpu, { gpa: BASE_GPA, size: PAGE, flags }, 'EINVAL', `flags ${hex(flags)}`)
    }
  })

  test('KVM_PRE_FAULT_MEMORY with an unaligned gpa or size is EINVAL', async ({ kvm, skip }) => {
    const vcpu = await validationVcpu({ kvm, skip })
    for (const gpa of [BASE_GPA + 1n, BASE_GPA + PAGE - 1n, BASE_GPA + 0x800n]) {
      await expectPreFaultErrno(vcpu, { gpa, size: PAGE }, 'EINVAL', `gpa ${hex(gpa)}`)
    }
    for (const size of [1n, PAGE - 1n, PAGE + 1n, SZ_2M - 8n]) {
      await expectPreFaultErrno(vcpu, { gpa: BASE_GPA, size }, 'EINVAL', `size ${hex(size)}`)
    }
  })

  test('KVM_PRE_FAULT_MEMORY with size 0 is EINVAL', async ({ kvm, skip }) => {
    const vcpu = await validationVcpu({ kvm, skip })
    await expectPreFaultErrno(vcpu, { gpa: BASE_GPA, size: 0n }, 'EINVAL', 'size 0')
    await expectPreFaultErrno(vcpu, { gpa: 0n, size: 0n }, 'EINVAL', 'gpa 0, size 0')
  })

  test('KVM_PRE_FAULT_MEMORY of a range that wraps past 2^64 is EINVAL', async ({ kvm, skip }) => {
    const vcpu = await validationVcpu({ kvm, skip })
    const last = U64_MAX - PAGE + 1n
    // gpa + size <= gpa: a sum of exactly 2^64 wraps to 0 as well.
    await expectPreFaultErrno(vcpu, { gpa: last, size: PAGE }, 'EINVAL', `[${hex(last)}, +0x1000)`)
    await expectPreFaultErrno(vcpu, { gpa: last, size: 2n * PAGE }, 'EINVAL', `[${hex(last)}, +0x2000)`)
    await expectPreFaultErrno(vcpu, { gpa: PAGE, size: last }, 'EINVAL', `[0x1000, +${hex(last)})`)
  })

  test('without KVM_CAP_PRE_FAULT_MEMORY valid arguments are EOPNOTSUPP', async ({ kvm, skip }) => {
    const cap = await kvm.checkExtension(KVM_CAP_PRE_FAULT_MEMORY)
    requireThat({ skip }, cap === 0, `KVM_CAP_PRE_FAULT_MEMORY = ${cap}: prefaulting is supported here (pre_fault_memory_test covers it)`)
    const vcpu = await validationVcpu({ kvm, skip })
    await expectPreFaultErrno(vcpu, { gpa: BASE_GPA, size: PAGE }, 'EOPNOTSUPP', 'of a page in a memslot')
    await expectPreFaultErrno(vcpu, { gpa: BASE_GPA, size: TEST_SIZE }, 'EOPNOTSUPP', 'of the whole memslot')
    await expectPreFaultErrno(vcpu, { gpa: 0x1_0000_0000n, size: PAGE }, 'EOPNOTSUPP', 'of a page outside every memslot')
  })
})

