// The backend under test for this vitest worker.
//
// Each conformance project provides its backend's name (vitest.config.ts: `provide`); the first test
// that asks loads it once per worker. KVMCONF_PROFILE picks the emulator's kernel profile.

import { inject } from 'vitest'
import type { BackendLoad } from './backend.ts'
import type { BackendName } from './backend-names.ts'

declare module 'vitest' {
  export interface ProvidedContext {
    kvmconfBackend: BackendName
  }
}

let loading: Promise<BackendLoad> | undefined

export function backendName(): BackendName {
  return inject('kvmconfBackend')
}

export function backendUnderTest(): Promise<BackendLoad> {
  loading ??= (async () => {
    const { loadBackend } = await import('../backends/index.ts')
    const profile = process.env.KVMCONF_PROFILE
    return loadBackend(backendName(), { profile: profile === '' ? undefined : profile })
  })()
  return loading
}
