// test_faulty_vm_fd in the kvm-ioctls sense: every method of a closed object fails with EBADF.
//
// The handle is marked closed in the addon, so the call never reaches a recycled fd number. A closed
// HostMapping answers KvmError EBADF too (the addon never touches the unmapped range), not HostFault.

import { afterAll, describe, expect, test } from 'vitest'

import { KvmError } from '../../harness/errors.ts'
import { GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP } from '../../harness/uapi/kvm.ts'
import { load, nativeBackend } from './spec-support.ts'

afterAll(async () => {
  if (load.available) await load.backend.close()
})

async function expectAllEbadf(calls: Record<string, () => Promise<unknown>>): Promise<void> {
  for (const [name, call] of Object.entries(calls)) {
    let error: unknown = null
    try {
      await call()
    } catch (e) {
      error = e
    }
    expect(KvmError.is(error), `${name}: expected KvmError, got ${String(error)}`).toBe(true)
    expect((error as KvmError).code, name).toBe('EBADF')
  }
}

describe('faulty handles', () => {
  test('closed Vm', async (ctx) => {
    const kvm = nativeBackend(ctx)
    const vm = await kvm.createVm()
    await vm.close()
    await expectAllEbadf({
      checkExtension: () => vm.checkExtension(10),
      enableCap: () => vm.enableCap(213, [0]),
      setUserMemoryRegion: () => vm.setUserMemoryRegion({ slot: 0, flags: 0, guestPhysAddr: 0, memorySize: 0, userspaceAddr: 0 }),
      setUserMemoryRegion2: () => vm.setUserMemoryRegion2({ slot: 0, flags: 0, guestPhysAddr: 0, memorySize: 0, userspaceAddr: 0 }),
      createGuestMemfd: () => vm.createGuestMemfd({ size: 4096 }),
      setMemoryAttributes: () => vm.setMemoryAttributes({ address: 0, size: 4096, attributes: 0 }),
      getDirtyLog: () => vm.getDirtyLog(0),
      setNrMmuPages: () => vm.setNrMmuPages(64),
      createVcpu: () => vm.createVcpu(0),
      close: () => vm.close(),
    })
  })

  test('closed Vcpu, and the vCPUs of a closed Vm', async (ctx) => {
    const kvm = nativeBackend(ctx)
    const vm = await kvm.createVm()
    const a = await vm.createVcpu(0)
    const b = await vm.createVcpu(1)
    await a.close()
    await vm.close()
    for (const vcpu of [a, b]) {
      await expectAllEbadf({
        run: () => vcpu.run(),
        kick: () => vcpu.kick(),
        preFaultMemory: () => vcpu.preFaultMemory({ gpa: 0, size: 4096 }),
        getRip: () => vcpu.getRip(),
        close: () => vcpu.close(),
      })
    }
  })

  test('closed GuestMemfd', async (ctx) => {
    const kvm = nativeBackend(ctx)
    const vm = await kvm.createVm()
    const gmem = await vm.createGuestMemfd({ size: 1 << 20, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED })
    await gmem.close()
    await expectAllEbadf({
      stat: () => gmem.stat(),
      read: () => gmem.read(4096),
      write: () => gmem.write(new Uint8Array(4096)),
      pread: () => gmem.pread(4096, 0),
      pwrite: () => gmem.pwrite(new Uint8Array(4096), 0),
      fallocate: () => gmem.fallocate(3, 0, 4096),
      mmap: () => gmem.mmap({ length: 4096 }),
      close: () => gmem.close(),
    })
    await vm.close()
  })

  test('closed Uffd', async (ctx) => {
    const kvm = nativeBackend(ctx)
    const uffd = await kvm.openUffd({ via: 'syscall' })
    await uffd.close()
    await expectAllEbadf({
      api: () => uffd.api(0),
      register: () => uffd.register({ start: 0x10000, len: 4096 }, 1),
      unregister: () => uffd.unregister({ start: 0x10000, len: 4096 }),
      copy: () => uffd.copy({ dst: 0x10000, data: new Uint8Array(4096) }),
      zeropage: () => uffd.zeropage({ start: 0x10000, len: 4096 }),
      continue: () => uffd.continue({ start: 0x10000, len: 4096 }),
      wake: () => uffd.wake({ start: 0x10000, len: 4096 }),
      readEvents: () => uffd.readEvents(),
      close: () => uffd.close(),
    })
  })

  test('closed UserfaultBitmap', async (ctx) => {
    const bm = await nativeBackend(ctx).createUserfaultBitmap(64)
    await bm.close()
    await expectAllEbadf({
      set: () => bm.set(0),
      clear: () => bm.clear(0),
      test: () => bm.test(0),
      fill: () => bm.fill(true),
      words: () => bm.words(),
      close: () => bm.close(),
    })
  })

  test('closed HostMapping: KvmError EBADF, never an access to the unmapped range', async (ctx) => {
    const kvm = nativeBackend(ctx)
    for (const backing of ['anonymous', 'shmem'] as const) {
      const map = await kvm.mmap({ size: 8192, backing })
      await map.close()
      await expectAllEbadf({
        read: () => map.read(0, 16),
        write: () => map.write(0, new Uint8Array(16)),
        fill: () => map.fill(0, 16, 1),
        findMismatch: () => map.findMismatch(0, 16, 0),
        alias: () => map.alias(),
        madvise: () => map.madvise(4 /* MADV_DONTNEED */),
        close: () => map.close(),
      })
    }
  })

  test('a closed Backend', async (ctx) => {
    nativeBackend(ctx)
    const { createNativeBackend } = await import('./native.ts')
    const kvm = createNativeBackend()
    const vm = await kvm.createVm()
    await kvm.close()
    await expectAllEbadf({
      getApiVersion: () => kvm.getApiVersion(),
      checkExtension: () => kvm.checkExtension(10),
      createVm: () => kvm.createVm(),
      mmap: () => kvm.mmap({ size: 4096, backing: 'anonymous' }),
      createUserfaultBitmap: () => kvm.createUserfaultBitmap(64),
      openUffd: () => kvm.openUffd({ via: 'syscall' }),
      'vm.checkExtension (closed by Backend.close)': () => vm.checkExtension(10),
    })
  })

  test('faults outside a guarded access still reach the handlers installed before the addon (V8 wasm traps)', async (ctx) => {
    nativeBackend(ctx)
    // (module (memory 1) (func (export "f") (result i32) (i32.load (i32.const 0x20000))))
    const bytes = new Uint8Array([
      0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f, 0x03, 0x02, 0x01, 0x00,
      0x05, 0x03, 0x01, 0x00, 0x01, 0x07, 0x05, 0x01, 0x01, 0x66, 0x00, 0x00, 0x0a, 0x0b, 0x01, 0x09, 0x00, 0x41, 0x80,
      0x80, 0x08, 0x28, 0x02, 0x00, 0x0b,
    ])
    // tsconfig's lib has no WebAssembly declarations; the global is Node's.
    const wasm = (globalThis as unknown as { WebAssembly: {
      instantiate(b: Uint8Array): Promise<{ instance: { exports: Record<string, unknown> } }>
      RuntimeError: new () => Error
    } }).WebAssembly
    const { instance } = await wasm.instantiate(bytes)
    const f = instance.exports.f as () => number
    for (let i = 0; i < 3; i++) expect(() => f()).toThrow(wasm.RuntimeError)
  })
})
