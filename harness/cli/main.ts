// kvmconf: the command line. One file per verb beside this one; this file only dispatches.

import { EXIT_USAGE } from './usage.ts'

interface Verb {
  summary: string
  run(argv: string[]): Promise<number>
}

const VERBS: Record<string, () => Promise<Verb>> = {
  run: async () => (await import('./run.ts')).runVerb,
  caps: async () => (await import('./caps.ts')).capsVerb,
  'demand-paging': async () => (await import('./demand-paging.ts')).demandPagingVerb,
  agent: async () => (await import('./agent.ts')).agentVerb,
  merge: async () => (await import('./merge.ts')).mergeVerb,
  compare: async () => (await import('./compare.ts')).compareVerb,
  expectations: async () => (await import('./expectations.ts')).expectationsVerb,
  report: async () => (await import('./report.ts')).reportVerb,
  bench: async () => (await import('./bench.ts')).benchVerb,
  fuzz: async () => (await import('./fuzz.ts')).fuzzVerb,
}

const SUMMARIES: Record<string, string> = {
  run: 'run the conformance suites on a backend and summarise the results',
  caps: "print a backend's capability table",
  'demand-paging': "run demand_paging_test on a backend and print its demand paging rates",
  agent: 'serve a local backend to remote clients (the remote backend)',
  merge: 'merge the JSON results of the shards of one run',
  compare: 'compare two run results (conformance) or two bench results (A/B)',
  expectations: 'update expectations from a run result, or check expectations files',
  report: 'write a self-contained HTML report of a run result',
  bench: 'run the registered benchmarks; JSON samples and SVG plots',
  fuzz: 'model-based fuzzing of memslots and KVM Userfault; replay files in fixtures/fuzz-corpus',
}

function help(): string {
  const lines = [
    'Usage: kvmconf <command> [options]',
    '',
    'Conformance tests for the Linux KVM memory APIs behind post-copy live migration.',
    '',
    'Commands:',
    ...Object.keys(VERBS).map((v) => `  ${v.padEnd(14)} ${SUMMARIES[v] ?? ''}`),
    '',
    "Run 'kvmconf <command> --help' for a command's options.",
  ]
  return lines.join('\n') + '\n'
}

export async function main(argv: string[]): Promise<number> {
  const [verb, ...rest] = argv
  if (verb === undefined || verb === '--help' || verb === '-h' || verb === 'help') {
    process.stdout.write(help())
    return verb === undefined ? EXIT_USAGE : 0
  }
  const load = VERBS[verb]
  if (load === undefined) {
    process.stderr.write(`kvmconf: unknown command '${verb}' (see 'kvmconf --help')\n`)
    return EXIT_USAGE
  }
  return (await load()).run(rest)
}

export type { Verb }
