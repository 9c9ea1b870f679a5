import { describe, expect, test } from 'vitest'
import type { Backend } from './backend.ts'
import { KvmError } from './errors.ts'
import { scoped } from './scope.ts'

/** A backend whose VMs record when they are closed; just enough of the contract for the scope. */
function fakeBackend(log: string[]) {
  let next = 0
  const makeVm = () => {
    const id = next++
    let closed = false
    return {
      fd: 10 + id,
      createGuestMemfd: async () => ({
        fd: 100 + id,
        close: async () => void log.push(`gmem${id}`),
      }),
      close: async () => {
        if (closed) throw new KvmError('EBADF', 'close')
        closed = true
        log.push(`vm${id}`)
      },
    }
  }
  return { name: 'fake', createVm: async () => makeVm(), close: async () => void log.push('backend') } as unknown as Backend
}

describe('scoped', () => {
  test('closes what a test created, newest first, and never the backend', async () => {
    const log: string[] = []
    const scope = scoped(fakeBackend(log))
    const vm0 = await scope.kvm.createVm()
    await vm0.createGuestMemfd({ size: 4096 })
    await scope.kvm.createVm()
    await scope.release()
    expect(log).toEqual(['vm1', 'gmem0', 'vm0'])
  })

  test('skips handles the test closed itself', async () => {
    const log: string[] = []
    const scope = scoped(fakeBackend(log))
    const vm = await scope.kvm.createVm()
    await vm.close()
    await scope.release()
    expect(log).toEqual(['vm0'])
  })

  test('refuses to let a test close the shared backend', async () => {
    const log: string[] = []
    const scope = scoped(fakeBackend(log))
    await expect(scope.kvm.close()).rejects.toThrow(/shared backend/)
    expect(log).toEqual([])
  })
})
