// How `kvmconf run` drives vitest: the backend's conformance project as vitest.config.ts defines it,
// with the run's setup file (harness/cli/run-setup.ts) and plugins added, run in this process with the
// collect reporter. The reporter fixtures (harness/reporters/fixtures) go through the same function.

import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import type { BackendName } from '../backend-names.ts'
import type { CollectReporter } from '../reporters/collect.ts'
import { UsageError } from './usage.ts'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const SETUP_FILE = path.join(ROOT, 'harness/cli/run-setup.ts')

/** A vite plugin: the conformance project's imports of backends/index.ts resolve to `to` instead. */
export function redirectBackends(to: string) {
  const from = path.join(ROOT, 'backends/index.ts')
  return {
    name: 'kvmconf:emulator-bug',
    enforce: 'pre' as const,
    resolveId(source: string, importer: string | undefined): string | null {
      if (importer === undefined || importer === to || !source.startsWith('.')) return null
      return path.resolve(path.dirname(importer), source) === from ? to : null
    },
  }
}

export interface InlineProject {
  plugins?: unknown[]
  test: { name: string; include: string[]; setupFiles?: string[]; [option: string]: unknown }
}

export interface VitestRun {
  project: InlineProject
  /** File filters, as vitest's positional arguments. */
  filters?: string[]
  shard?: string
  testNamePattern?: string
  /** One test file at a time (kernel log attribution). */
  serial?: boolean
  plugins?: unknown[]
  collector: CollectReporter
}

/** The conformance project `backend` as vitest.config.ts defines it. */
export async function conformanceProject(backend: BackendName): Promise<InlineProject> {
  const config = (await import(pathToFileURL(path.join(ROOT, 'vitest.config.ts')).href)) as {
    default: { test?: { projects?: InlineProject[] } }
  }
  const project = config.default.test?.projects?.find((p) => p.test?.name === backend)
  if (project === undefined) throw new UsageError(`vitest.config.ts has no '${backend}' project`)
  return project
}

/** Runs one vitest project with the run's setup file and the collect reporter, in this process. */
export async function runVitest(o: VitestRun): Promise<void> {
  const { startVitest } = await import('vitest/node')
  const project = {
    ...o.project,
    plugins: [...(o.project.plugins ?? []), ...(o.plugins ?? [])],
    test: { ...o.project.test, setupFiles: [...(o.project.test.setupFiles ?? []), SETUP_FILE] },
  }
  const vitest = await startVitest(
    'test',
    o.filters ?? [],
    {
      root: ROOT,
      config: false,
      watch: false,
      reporters: [o.collector],
      ...(o.shard !== undefined ? { shard: o.shard } : {}),
      ...(o.testNamePattern !== undefined ? { testNamePattern: o.testNamePattern } : {}),
      ...(o.serial ? { fileParallelism: false } : {}),
    },
    { test: { projects: [project] } } as never,
  )
  await vitest.close()
}
