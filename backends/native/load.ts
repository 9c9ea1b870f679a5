// loadNative(): the native backend, or the precise reason this run cannot have it (no addon because
// the build failed or never ran, an addon that does not load, no /dev/kvm or no permission on it).
// Never throws: a missing backend is a capability the run lacks, reported as every test's skip reason.

import { existsSync, readFileSync } from 'node:fs'

import type { BackendLoad } from '../../harness/backend.ts'
import { KvmError } from '../../harness/errors.ts'
import { addonPathIn, BUILD_DIR, buildErrorPathIn, type NativeAddon, requireAddon } from './addon.ts'
import { createNativeBackend } from './native.ts'

/** `buildDir`: where build.mjs wrote its outputs (tests point it elsewhere). */
export async function loadNative(opts: { buildDir?: string } = {}): Promise<BackendLoad> {
  const buildDir = opts.buildDir ?? BUILD_DIR
  const addonPath = addonPathIn(buildDir)
  const errorPath = buildErrorPathIn(buildDir)
  try {
    if (existsSync(errorPath)) {
      return { available: false, reason: readFileSync(errorPath, 'utf8').trim() }
    }
    if (!existsSync(addonPath)) {
      return { available: false, reason: `native addon not built: ${addonPath} is missing (npm install builds it)` }
    }
    let addon: NativeAddon
    try {
      addon = requireAddon(addonPath)
    } catch (e) {
      return { available: false, reason: `native addon failed to load: ${e instanceof Error ? e.message : String(e)}` }
    }
    if (!existsSync('/dev/kvm')) return { available: false, reason: '/dev/kvm: ENOENT (no KVM on this machine)' }
    try {
      return { available: true, backend: createNativeBackend(addon) }
    } catch (e) {
      if (KvmError.is(e)) return { available: false, reason: `/dev/kvm: ${e.code} (${e.op})` }
      throw e
    }
  } catch (e) {
    return { available: false, reason: `native backend: ${e instanceof Error ? e.message : String(e)}` }
  }
}
