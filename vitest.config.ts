// Vitest projects: `self` (the *.spec.ts beside each module, the suites' own self-tests among them) and one conformance project per backend
// over suites/**/*.test.ts. KVMCONF_BACKEND=<name> keeps only that backend's conformance project.

import { defineConfig } from 'vitest/config'
import { BACKEND_NAMES, selectedBackends } from './harness/backend-names.ts'

const backends = selectedBackends(process.env.KVMCONF_BACKEND)

export default defineConfig({
  test: {
    reporters: ['default', './harness/reporters/skip-reasons.ts'],
    projects: [
      {
        test: {
          name: 'self',
          include: ['harness/**/*.spec.ts', 'backends/**/*.spec.ts', 'suites/**/*.spec.ts'],
          testTimeout: 60_000,
        },
      },
      ...backends.map((backend) => ({
        test: {
          name: backend,
          include: ['suites/**/*.test.ts'],
          provide: { kvmconfBackend: backend },
          // The remote project runs every test through a `kvmconf agent` that this setup starts on loopback.
          ...(backend === 'remote' ? { globalSetup: ['backends/remote/global-setup.ts'] } : {}),
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      })),
    ],
  },
})

export { BACKEND_NAMES }
