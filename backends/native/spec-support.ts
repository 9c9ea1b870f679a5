// Shared by the native backend's self-tests: the load result, and a backend or a skip with the reason.
// On a machine without /dev/kvm or without a built addon every self-test skips with that reason.

import type { TestContext } from 'vitest'

import type { Backend } from '../../harness/backend.ts'
import { type NativeAddon, requireAddon } from './addon.ts'
import { loadNative } from './load.ts'

export const load = await loadNative()

/** The native backend of this file's run, or a skip carrying the reason it is unavailable. */
export function nativeBackend(ctx: TestContext): Backend {
  if (!load.available) {
    ctx.skip(`the native backend is not available: ${load.reason}`)
    throw new Error('unreachable: ctx.skip() throws')
  }
  return load.backend
}

/** The raw addon (for tests of its argument checks), or a skip. */
export function nativeAddon(ctx: TestContext): NativeAddon {
  nativeBackend(ctx)
  return requireAddon()
}

/** The number of open fds of this process. */
export async function openFdCount(): Promise<number> {
  const { readdir } = await import('node:fs/promises')
  return (await readdir('/proc/self/fd')).length
}
