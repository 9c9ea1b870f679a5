// The backends kvmconf knows, by name. The registry that loads them is backends/index.ts.

export const BACKEND_NAMES = ['emulator', 'native', 'remote'] as const
export type BackendName = (typeof BACKEND_NAMES)[number]

export function isBackendName(s: string): s is BackendName {
  return (BACKEND_NAMES as readonly string[]).includes(s)
}

/** The backends a run covers: all of them, or the one KVMCONF_BACKEND names. */
export function selectedBackends(env: string | undefined): BackendName[] {
  if (env === undefined || env === '') return [...BACKEND_NAMES]
  if (!isBackendName(env)) {
    throw new Error(`KVMCONF_BACKEND=${env}: expected one of ${BACKEND_NAMES.join(', ')}`)
  }
  return [env]
}
