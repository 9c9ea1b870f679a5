// The emulator's userfaultfd (userfaultfd.ts, uffd-registrations.ts, uffd-mfill.ts, host-page-fault.ts,
// host-access.ts, wired in contract/ and vcpu.ts): the ioctls' rules and bad input, host page presence,
// and vCPUs that sleep on a fault until it is woken. The same sequences against the real kernel are in
// backends/differential/userfaultfd.spec.ts; these pin the emulator's own decisions (profiles, deadlines,
// host accesses, KVM_PRE_FAULT_MEMORY) and what the kernel cannot show on this project's machines.

import { describe, expect, test } from 'vitest'
import type { Backend, HostMapping, Uffd, Vcpu, VcpuExit } from '../../harness/backend.ts'
import { VcpuTimeout } from '../../harness/errors.ts'
import { MADV_DONTNEED, MADV_REMOVE } from '../../harness/uapi/fs.ts'
import {
  UFFD_FEATURE_EXACT_ADDRESS, UFFD_FEATURE_SIGBUS, UFFD_USER_MODE_ONLY, UFFDIO_COPY_MODE_DONTWAKE,
  UFFDIO_REGISTER_MODE_MINOR, UFFDIO_REGISTER_MODE_MISSING,
} from '../../harness/uapi/userfaultfd.ts'
import { createEmulatorBackend } from './index.ts'
import { setTimeout as sleep } from 'node:timers/promises'

const P = 4096n
const GPA = 1n << 30n
/** Bad input from JavaScript: a TypeError or RangeError, not a KvmError. */
const isArgumentError = (e: unknown) => e instanceof TypeError || e instanceof RangeError

async function uffdOn(kvm: Backend, opts: { flags?: number; features?: number } = {}): Promise<Uffd> {
  const uffd = await kvm.openUffd({ via: 'syscall', flags: opts.flags ?? 0 })
  await uffd.api(opts.features ?? 0)
  return uffd
}

/** A VM with slot 1 at GPA over `mem` and vCPU 0 running `steps`. */
async function vcpuOver(kvm: Backend, mem: HostMapping, steps: Parameters<Vcpu['loadProgram']>[0]['steps']): Promise<Vcpu> {
  const vm = await kvm.createVm()
  await vm.setUserMemoryRegion({ slot: 1, flags: 0, guestPhysAddr: GPA, memorySize: mem.size, userspaceAddr: mem.addr })
  const vcpu = await vm.createVcpu(0)
  await vcpu.loadProgram({ steps })
  return vcpu
}

const readAt = (offset: bigint) => [{ op: 'read', gva: GPA + offset, width: 1 } as const, { op: 'signal', port: 1 } as const]

/** Whether `p` is still pending after `ms`. */
async function pendingAfter(p: Promise<unknown>, ms = 30): Promise<boolean> {
  let pending = true
  p.then(() => (pending = false), () => (pending = false))
  await sleep(ms)
  return pending
}

function ioValue(exit: VcpuExit): number {
  if (exit.kind !== 'io') throw new Error(`expected io, got ${exit.kind}`)
  return exit.data[0]!
}

describe('userfaultfd: the fd and UFFDIO_API', () => {
  test('flags: O_CLOEXEC, O_NONBLOCK and UFFD_USER_MODE_ONLY only; both ways in', async () => {
    const kvm = createEmulatorBackend()
    for (const flags of [0, 0o4000, 0o2000000, UFFD_USER_MODE_ONLY]) await (await kvm.openUffd({ via: 'syscall', flags })).close()
    for (const flags of [2, 0x10, -1]) {
      await expect(kvm.openUffd({ via: 'syscall', flags })).rejects.toMatchObject({ code: 'EINVAL', op: 'userfaultfd' })
    }
    await expect(kvm.openUffd({ via: 'nope' as 'dev' })).rejects.toThrow(TypeError)
    await expect(kvm.openUffd({ via: 'dev', flags: 1.5 })).rejects.toSatisfy(isArgumentError)
  })

  test('before UFFDIO_API every other call is EINVAL; a failed API can be retried, a second one cannot', async () => {
    const kvm = createEmulatorBackend()
    const uffd = await kvm.openUffd({ via: 'dev' })
    const mem = await kvm.mmap({ size: P, backing: 'anonymous' })
    for (const call of [
      uffd.register({ start: mem.addr, len: P }, UFFDIO_REGISTER_MODE_MISSING), uffd.unregister({ start: mem.addr, len: P }),
      uffd.copy({ dst: mem.addr, data: new Uint8Array(4096) }), uffd.zeropage({ start: mem.addr, len: P }),
      uffd.continue({ start: mem.addr, len: P }), uffd.wake({ start: mem.addr, len: P }), uffd.readEvents(),
    ]) await expect(call).rejects.toMatchObject({ code: 'EINVAL' })
    await expect(uffd.api(1n << 17n)).rejects.toMatchObject({ code: 'EINVAL', op: 'UFFDIO_API' })
    expect(await uffd.api(UFFD_FEATURE_SIGBUS)).toEqual({ features: 0x1ffffn, ioctls: 0x8000000000000003n })
    await expect(uffd.api(0)).rejects.toMatchObject({ code: 'EINVAL' })
    expect(await uffd.readEvents()).toEqual([])
    await uffd.close()
    await expect(uffd.readEvents()).rejects.toMatchObject({ code: 'EBADF', op: 'read' })
    await expect(uffd.close()).rejects.toMatchObject({ code: 'EBADF', op: 'close' })
  })

  test('bad u64 arguments are TypeError/RangeError, never a crash', async () => {
    const kvm = createEmulatorBackend()
    const uffd = await uffdOn(kvm)
    await expect(uffd.register({ start: -1, len: P }, 1)).rejects.toSatisfy(isArgumentError)
    await expect(uffd.copy({ dst: 0x10000, data: 'x' as unknown as Uint8Array })).rejects.toSatisfy(isArgumentError)
    await expect(uffd.zeropage({ start: 0x10000, len: 1n << 64n })).rejects.toSatisfy(isArgumentError)
    await expect(uffd.readEvents(-1)).rejects.toSatisfy(isArgumentError)
    await expect(uffd.wake({ start: 'x' as unknown as number, len: P })).rejects.toSatisfy(isArgumentError)
  })
})

describe('userfaultfd: registration across mappings', () => {
  // Measured on the project's 6.18 host with three adjacent anonymous mappings, the middle one unmapped
  // (not in the differential scenarios: in a multi-threaded process other mappings may land in between).
  test('a hole in the range is allowed if something is mapped; the hole itself is EINVAL; COPY into it ENOENT', async () => {
    const kvm = createEmulatorBackend()
    const uffd = await uffdOn(kvm)
    const [a, b, c] = [await kvm.mmap({ size: 2n * P, backing: 'anonymous' }), await kvm.mmap({ size: 2n * P, backing: 'anonymous' }), await kvm.mmap({ size: 2n * P, backing: 'anonymous' })]
    expect([a!.addr - b!.addr, b!.addr - c!.addr]).toEqual([2n * P, 2n * P])
    await b!.close()
    const all = { start: c!.addr, len: a!.addr + a!.size - c!.addr }
    expect(await uffd.register(all, UFFDIO_REGISTER_MODE_MISSING)).toEqual({ ioctls: 0x13cn })
    expect(await uffd.copy({ dst: c!.addr, data: new Uint8Array(4096) })).toBe(P)
    await expect(uffd.copy({ dst: b!.addr, data: new Uint8Array(4096) })).rejects.toMatchObject({ code: 'ENOENT' })
    await expect(uffd.copy({ dst: c!.addr + P, data: new Uint8Array(2 * 4096) })).rejects.toMatchObject({ code: 'ENOENT' })
    await expect(uffd.register({ start: b!.addr, len: b!.size }, UFFDIO_REGISTER_MODE_MISSING)).rejects.toMatchObject({ code: 'EINVAL' })
    await expect(uffd.unregister({ start: b!.addr, len: b!.size })).rejects.toMatchObject({ code: 'EINVAL' })
    await uffd.unregister(all)
    await expect(uffd.copy({ dst: a!.addr, data: new Uint8Array(4096) })).rejects.toMatchObject({ code: 'ENOENT' })
  })

  test('munmap() takes the registration with it; a guest_memfd mapping cannot be registered', async () => {
    const kvm = createEmulatorBackend()
    const uffd = await uffdOn(kvm)
    const mem = await kvm.mmap({ size: P, backing: 'anonymous' })
    await uffd.register({ start: mem.addr, len: P }, UFFDIO_REGISTER_MODE_MISSING)
    await mem.close()
    await expect(uffd.copy({ dst: mem.addr, data: new Uint8Array(4096) })).rejects.toMatchObject({ code: 'ENOENT' })
    const gmem = await (await kvm.createVm()).createGuestMemfd({ size: P, flags: 3 })
    const map = await gmem.mmap({ length: P })
    await expect(uffd.register({ start: map.addr, len: P }, UFFDIO_REGISTER_MODE_MISSING)).rejects.toMatchObject({ code: 'EINVAL' })
  })
})

describe('userfaultfd: host page presence', () => {
  test('anonymous: written, read (the zero page) or copied pages are present; MADV_DONTNEED makes them missing', async () => {
    const kvm = createEmulatorBackend()
    const uffd = await uffdOn(kvm)
    const mem = await kvm.mmap({ size: 4n * P, backing: 'anonymous' })
    await mem.fill(0, P, 0) // a zero fill writes the page: present
    await mem.read(P, 1) // the zero page
    await uffd.register({ start: mem.addr, len: mem.size }, UFFDIO_REGISTER_MODE_MISSING)
    await expect(uffd.zeropage({ start: mem.addr, len: P })).rejects.toMatchObject({ code: 'EEXIST' })
    await expect(uffd.zeropage({ start: mem.addr + P, len: P })).rejects.toMatchObject({ code: 'EEXIST' })
    expect(await uffd.zeropage({ start: mem.addr + 2n * P, len: P })).toBe(P)
    await mem.madvise(MADV_DONTNEED, 0, 4n * P)
    expect(await uffd.zeropage({ start: mem.addr, len: 4n * P })).toBe(4n * P)
  })

  test('shmem: page cache per file, PTEs per mapping; MADV_REMOVE empties the page cache', async () => {
    const kvm = createEmulatorBackend()
    const uffd = await uffdOn(kvm)
    const shm = await kvm.mmap({ size: 4n * P, backing: 'shmem' })
    const alias = await shm.alias()
    await alias.write(0, new Uint8Array([1]))
    await uffd.register({ start: shm.addr, len: shm.size }, UFFDIO_REGISTER_MODE_MINOR | UFFDIO_REGISTER_MODE_MISSING)
    await uffd.register({ start: alias.addr, len: alias.size }, UFFDIO_REGISTER_MODE_MINOR)
    // Page 0: cached, mapped by the alias only. Continue maps it in the primary; again is EEXIST there only.
    await expect(uffd.continue({ start: alias.addr, len: P })).rejects.toMatchObject({ code: 'EEXIST' })
    expect(await uffd.continue({ start: shm.addr, len: P })).toBe(P)
    await expect(uffd.copy({ dst: shm.addr, data: new Uint8Array(4096) })).rejects.toMatchObject({ code: 'EEXIST' })
    // MADV_REMOVE through the primary: the page leaves the file, and every mapping.
    await shm.madvise(MADV_REMOVE, 0, P)
    await expect(uffd.continue({ start: alias.addr, len: P })).rejects.toMatchObject({ code: 'EFAULT' })
    expect(await uffd.copy({ dst: shm.addr, data: new Uint8Array(4096).fill(7) })).toBe(P)
    // The alias is MINOR-registered and lost its PTE: reading it would sleep (EDEADLK) until CONTINUE.
    await expect(alias.read(0, 1)).rejects.toMatchObject({ code: 'EDEADLK' })
    expect(await uffd.continue({ start: alias.addr, len: P })).toBe(P)
    expect(await alias.read(0, 1)).toEqual(new Uint8Array([7]))
  })
})

describe('userfaultfd: a vCPU sleeps on a fault', () => {
  test('MISSING read: one message (page-aligned address, flags 0) read once; COPY wakes; the access is re-executed', async () => {
    const kvm = createEmulatorBackend()
    const uffd = await uffdOn(kvm)
    const mem = await kvm.mmap({ size: 2n * P, backing: 'anonymous' })
    const vcpu = await vcpuOver(kvm, mem, readAt(P + 9n))
    await uffd.register({ start: mem.addr, len: mem.size }, UFFDIO_REGISTER_MODE_MISSING)
    const run = vcpu.run({ timeoutMs: 5000 })
    expect(await pendingAfter(run)).toBe(true)
    expect(await uffd.readEvents()).toEqual([{ kind: 'pagefault', address: mem.addr + P, flags: 0n }])
    expect(await uffd.readEvents()).toEqual([])
    await expect(vcpu.getRip()).rejects.toMatchObject({ code: 'EBUSY' })
    await uffd.copy({ dst: mem.addr + P, data: new Uint8Array(4096).fill(0x5a) })
    expect(ioValue(await run)).toBe(0x5a)
  })

  test('a wake before the message is read takes the message with it; a WAKE without resolving faults again', async () => {
    const kvm = createEmulatorBackend()
    const uffd = await uffdOn(kvm)
    const mem = await kvm.mmap({ size: P, backing: 'anonymous' })
    const vcpu = await vcpuOver(kvm, mem, [{ op: 'write', gva: GPA, value: 1, width: 1 }, { op: 'signal', port: 1, value: 2 }])
    await uffd.register({ start: mem.addr, len: P }, UFFDIO_REGISTER_MODE_MISSING)
    const run = vcpu.run({ timeoutMs: 5000 })
    await pendingAfter(run)
    await uffd.wake({ start: mem.addr, len: P })
    await pendingAfter(run)
    // The first message went with its waiter; the retried write queued a new one.
    expect(await uffd.readEvents()).toEqual([{ kind: 'pagefault', address: mem.addr, flags: 1n }])
    await uffd.copy({ dst: mem.addr, data: new Uint8Array(4096), mode: UFFDIO_COPY_MODE_DONTWAKE })
    expect(await pendingAfter(run)).toBe(true)
    await uffd.unregister({ start: mem.addr, len: P }) // a MISSING range: wakes
    expect(ioValue(await run)).toBe(2)
    expect(await mem.read(0, 1)).toEqual(new Uint8Array([1]))
  })

  test('MINOR: flags MINOR (| WRITE); UNREGISTER does not wake it, UFFDIO_WAKE does', async () => {
    const kvm = createEmulatorBackend()
    const uffd = await uffdOn(kvm)
    const shm = await kvm.mmap({ size: P, backing: 'shmem' })
    const alias = await shm.alias()
    await alias.fill(0, P, 0x33)
    const vcpu = await vcpuOver(kvm, shm, [{ op: 'write', gva: GPA, value: 0x44, width: 1 }, { op: 'signal', port: 1, value: 2 }])
    await uffd.register({ start: shm.addr, len: P }, UFFDIO_REGISTER_MODE_MINOR)
    const run = vcpu.run({ timeoutMs: 5000 })
    await pendingAfter(run)
    expect(await uffd.readEvents()).toEqual([{ kind: 'pagefault', address: shm.addr, flags: 5n }])
    await uffd.unregister({ start: shm.addr, len: P })
    expect(await pendingAfter(run)).toBe(true)
    await uffd.wake({ start: shm.addr, len: P })
    expect(ioValue(await run)).toBe(2)
    expect(await alias.read(0, 2)).toEqual(new Uint8Array([0x44, 0x33]))
  })

  test('closing the userfaultfd wakes every waiter and unregisters; the retried fault is served', async () => {
    const kvm = createEmulatorBackend()
    const uffd = await uffdOn(kvm)
    const mem = await kvm.mmap({ size: P, backing: 'anonymous' })
    const vcpu = await vcpuOver(kvm, mem, readAt(0n))
    await uffd.register({ start: mem.addr, len: P }, UFFDIO_REGISTER_MODE_MISSING)
    const run = vcpu.run({ timeoutMs: 5000 })
    await pendingAfter(run)
    await uffd.close()
    expect(ioValue(await run)).toBe(0)
  })

  test('upstream (gup): a kick ends the sleep with intr, and its unread message goes with it', async () => {
    const kvm = createEmulatorBackend({ profile: 'upstream-6.18' })
    const uffd = await uffdOn(kvm)
    const mem = await kvm.mmap({ size: P, backing: 'anonymous' })
    const vcpu = await vcpuOver(kvm, mem, readAt(0n))
    await uffd.register({ start: mem.addr, len: P }, UFFDIO_REGISTER_MODE_MISSING)
    const run = vcpu.run({ timeoutMs: 5000 })
    await pendingAfter(run)
    await vcpu.kick()
    expect(await run).toEqual({ kind: 'intr' })
    expect(await uffd.readEvents()).toEqual([])
    // The deadline is a kick too: VcpuTimeout, and the vCPU is idle again at once.
    await expect(vcpu.run({ timeoutMs: 20 })).rejects.toSatisfy(VcpuTimeout.is)
    expect(typeof (await vcpu.getRip())).toBe('bigint')
  })

  test('pvm-6.18 (uaccess): a kick does not end the sleep; a deadline answers timeout and the vCPU stays busy until the wake', async () => {
    const kvm = createEmulatorBackend({ profile: 'pvm-6.18' })
    const uffd = await uffdOn(kvm)
    const mem = await kvm.mmap({ size: P, backing: 'anonymous' })
    const vcpu = await vcpuOver(kvm, mem, readAt(5n))
    await uffd.register({ start: mem.addr, len: P }, UFFDIO_REGISTER_MODE_MISSING)
    const run = vcpu.run({ timeoutMs: 5000 })
    await pendingAfter(run)
    await vcpu.kick()
    expect(await pendingAfter(run)).toBe(true)
    await uffd.copy({ dst: mem.addr, data: new Uint8Array(4096).fill(3) })
    expect(await run).toEqual({ kind: 'intr' }) // the kick is seen once the fault is woken
    await mem.madvise(MADV_DONTNEED)
    await expect(vcpu.run({ timeoutMs: 20 })).rejects.toSatisfy(VcpuTimeout.is)
    await expect(vcpu.run()).rejects.toMatchObject({ code: 'EBUSY' })
    await uffd.copy({ dst: mem.addr, data: new Uint8Array(4096).fill(4) })
    await sleep(10)
    expect(ioValue(await vcpu.run({ timeoutMs: 5000 }))).toBe(4)
  })

  test('closing the vCPU or the VM ends a sleep that nothing else would', async () => {
    const kvm = createEmulatorBackend({ profile: 'pvm-6.18' })
    const uffd = await uffdOn(kvm)
    const mem = await kvm.mmap({ size: P, backing: 'anonymous' })
    const vcpu = await vcpuOver(kvm, mem, readAt(0n))
    await uffd.register({ start: mem.addr, len: P }, UFFDIO_REGISTER_MODE_MISSING)
    const run = vcpu.run({ timeoutMs: 20 }).catch((e: unknown) => e)
    expect(VcpuTimeout.is(await run)).toBe(true)
    await vcpu.close()
    await kvm.close()
  })

  test('UFFD_USER_MODE_ONLY and UFFD_FEATURE_SIGBUS: KVM cannot have the page (EFAULT upstream, MMIO on pvm)', async () => {
    for (const [profile, want] of [['upstream-6.18', 'memory_fault'], ['pvm-6.18', 'mmio']] as const) {
      for (const opts of [{ flags: UFFD_USER_MODE_ONLY }, { features: UFFD_FEATURE_SIGBUS }]) {
        const kvm = createEmulatorBackend({ profile })
        const uffd = await uffdOn(kvm, opts)
        const mem = await kvm.mmap({ size: P, backing: 'anonymous' })
        const vcpu = await vcpuOver(kvm, mem, readAt(0n))
        await uffd.register({ start: mem.addr, len: P }, UFFDIO_REGISTER_MODE_MISSING)
        expect((await vcpu.run({ timeoutMs: 5000 })).kind).toBe(want)
        expect(await uffd.readEvents()).toEqual([])
      }
    }
  })

  test('UFFD_FEATURE_EXACT_ADDRESS: the page on upstream (get_user_pages), the byte on pvm (uaccess)', async () => {
    for (const [profile, offset] of [['upstream-6.18', 0n], ['pvm-6.18', 0x123n]] as const) {
      const kvm = createEmulatorBackend({ profile })
      const uffd = await uffdOn(kvm, { features: UFFD_FEATURE_EXACT_ADDRESS })
      const mem = await kvm.mmap({ size: P, backing: 'anonymous' })
      const vcpu = await vcpuOver(kvm, mem, readAt(0x123n))
      await uffd.register({ start: mem.addr, len: P }, UFFDIO_REGISTER_MODE_MISSING)
      const run = vcpu.run({ timeoutMs: 5000 })
      await pendingAfter(run)
      expect(await uffd.readEvents()).toEqual([{ kind: 'pagefault', address: mem.addr + offset, flags: 0n }])
      await uffd.zeropage({ start: mem.addr, len: P })
      expect(ioValue(await run)).toBe(0)
    }
  })
})

describe('userfaultfd: KVM_PRE_FAULT_MEMORY and host accesses', () => {
  test('KVM_PRE_FAULT_MEMORY sleeps on the fault like get_user_pages(); a wake maps the page, a kick is EINTR', async () => {
    const kvm = createEmulatorBackend({ profile: 'upstream-6.18' })
    const uffd = await uffdOn(kvm)
    const mem = await kvm.mmap({ size: 2n * P, backing: 'anonymous' })
    const vcpu = await vcpuOver(kvm, mem, [])
    await uffd.register({ start: mem.addr, len: mem.size }, UFFDIO_REGISTER_MODE_MISSING)
    const pre = vcpu.preFaultMemory({ gpa: GPA, size: 2n * P })
    expect(await pendingAfter(pre)).toBe(true)
    expect(await uffd.readEvents()).toEqual([{ kind: 'pagefault', address: mem.addr, flags: 0n }])
    await uffd.copy({ dst: mem.addr, data: new Uint8Array(4096) })
    expect(await pendingAfter(pre)).toBe(true) // now on page 1
    expect(await uffd.readEvents()).toEqual([{ kind: 'pagefault', address: mem.addr + P, flags: 0n }])
    await vcpu.kick()
    // One page was done: success with the rest left, as after any signal.
    expect(await pre).toEqual({ ok: true, gpa: GPA + P, size: P })
    const again = vcpu.preFaultMemory({ gpa: GPA + P, size: P })
    await pendingAfter(again)
    await vcpu.kick()
    expect(await again).toMatchObject({ ok: false, error: { code: 'EINTR' }, gpa: GPA + P, size: P })
  })

  test('a host access that would sleep on the userfaultfd: EDEADLK after the bytes before the page; SIGBUS with UFFD_FEATURE_SIGBUS', async () => {
    const kvm = createEmulatorBackend()
    const uffd = await uffdOn(kvm)
    const mem = await kvm.mmap({ size: 2n * P, backing: 'anonymous' })
    await uffd.register({ start: mem.addr + P, len: P }, UFFDIO_REGISTER_MODE_MISSING)
    await expect(mem.write(P - 2n, new Uint8Array([1, 2, 3, 4]))).rejects.toMatchObject({ name: 'KvmError', code: 'EDEADLK', op: 'HostMapping.write' })
    expect(await mem.read(P - 2n, 2)).toEqual(new Uint8Array([1, 2]))
    await expect(mem.read(P, 1)).rejects.toMatchObject({ code: 'EDEADLK', op: 'HostMapping.read' })
    await expect(mem.fill(0, 2n * P, 9)).rejects.toMatchObject({ code: 'EDEADLK' })
    expect(await mem.findMismatch(0, 2n * P, 0)).toBe(0n) // the mismatch comes before the page
    await expect(mem.findMismatch(0, 2n * P, 9)).rejects.toMatchObject({ code: 'EDEADLK' })
    expect(await uffd.readEvents()).toEqual([]) // nothing was queued
    await uffd.zeropage({ start: mem.addr + P, len: P })
    expect(await mem.read(P, 1)).toEqual(new Uint8Array([0]))

    const sig = await uffdOn(kvm, { features: UFFD_FEATURE_SIGBUS })
    const other = await kvm.mmap({ size: P, backing: 'anonymous' })
    await sig.register({ start: other.addr, len: P }, UFFDIO_REGISTER_MODE_MISSING)
    await expect(other.read(8, 1)).rejects.toMatchObject({ name: 'HostFault', code: 'SIGBUS', address: other.addr + 8n })
  })
})
