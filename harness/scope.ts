// A test's resources, freed when the test ends.
//
// `scoped(backend)` hands a test a view of the backend in which every handle it creates (VM, vCPU,
// guest_memfd, mapping, bitmap, userfaultfd: anything with a close()) is remembered and closed, newest
// first, after the test, pass or fail. A test may still close a handle itself; the scope then skips it.
// Without this a failing assertion would leak VMs and fds into the next test on a real kernel.

import type { Backend } from './backend.ts'
import { KvmError } from './errors.ts'

interface Closable {
  close(): Promise<void>
}

function isClosable(x: unknown): x is Closable {
  return typeof x === 'object' && x !== null && typeof (x as Closable).close === 'function'
}

export interface Scope {
  readonly kvm: Backend
  /** Closes every handle still open; rejects with the first unexpected close error. */
  release(): Promise<void>
}

export function scoped(backend: Backend): Scope {
  const open = new Set<Closable>()

  const track = <T extends object>(target: T, root = false): T => {
    const proxy: T = new Proxy(target, {
      get(obj, prop, receiver) {
        const value = Reflect.get(obj, prop, receiver)
        if (typeof value !== 'function') return value
        if (prop === 'close' && root) {
          return () => Promise.reject(new Error('a test may not close the shared backend'))
        }
        if (prop === 'close') {
          return async () => {
            open.delete(proxy as unknown as Closable)
            await (value as () => Promise<void>).call(obj)
          }
        }
        return (...args: unknown[]) => {
          const result: unknown = (value as (...a: unknown[]) => unknown).apply(obj, args)
          if (!(result instanceof Promise)) return result
          return result.then((made: unknown) => {
            if (!isClosable(made)) return made
            const wrapped = track(made)
            open.add(wrapped)
            return wrapped
          })
        }
      },
    })
    return proxy
  }

  const kvm = track(backend, true)
  // The backend itself outlives the test: only what the test created is released.
  return {
    kvm,
    async release() {
      let first: unknown
      for (const handle of [...open].reverse()) {
        open.delete(handle)
        try {
          await handle.close()
        } catch (e) {
          // Closing a VM closes its vCPUs and guest_memfd bindings: their own close may then see EBADF.
          if (KvmError.is(e) && e.code === 'EBADF') continue
          first ??= e
        }
      }
      if (first !== undefined) throw first
    },
  }
}
