// The backend registry: the one place that knows where each backend lives.
//
// Tests and the harness never import a backend module; they ask for a backend by name and get a
// BackendLoad: the backend, or the reason this run cannot have it (which becomes every test's skip).
// Backends are imported lazily so a missing addon or a down agent cannot break the others.

import type { BackendLoad } from '../harness/backend.ts'
import type { BackendName } from '../harness/backend-names.ts'

export interface LoadOptions {
  /** The emulator's kernel profile (default: the emulator's own default). */
  profile?: string | undefined
}

export async function loadBackend(name: BackendName, opts: LoadOptions = {}): Promise<BackendLoad> {
  switch (name) {
    case 'emulator': {
      const { loadEmulator } = await import('./emulator/index.ts')
      return loadEmulator({ profile: opts.profile })
    }
    case 'native': {
      const { loadNative } = await import('./native/load.ts')
      return loadNative()
    }
    case 'remote': {
      // The agent and its token come from KVMCONF_AGENT and KVMCONF_TOKEN_FILE (backends/remote/load.ts).
      const { loadRemote } = await import('./remote/load.ts')
      return loadRemote()
    }
  }
}
