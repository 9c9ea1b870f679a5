// kvmconf bench: the registered benchmarks (harness/bench/registry.ts) on one backend, repeated, written
// as JSON (harness/bench/result.ts) with an SVG plot per metric next to it. `kvmconf compare` A/B-tests
// two such files.

import { writeFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { BACKEND_NAMES } from '../backend-names.ts'
import { BENCHMARKS, benchmarkNames } from '../bench/registry.ts'
import { median, metricKey, type Clock } from '../bench/result.ts'
import { runBenchmarks } from '../bench/run-bench.ts'
import { plotBench } from '../reporters/svg-plot.ts'
import { EXIT_ALL_SKIPPED, EXIT_OK, UsageError, oneOf, withUsage } from './usage.ts'
import { runInfoOf, useAgent } from './run.ts'

const HELP = `Usage: kvmconf bench [options]

Runs the registered benchmarks on one backend, --repeat samples of every parameter point (interleaved),
writes the samples as JSON and, next to it, an SVG plot of each metric against its parameter
(FILE.json -> FILE.<benchmark>-<metric>.svg). Compare two runs with 'kvmconf compare A.json B.json'.

Options:
  --backend NAME         ${BACKEND_NAMES.join(' | ')} (default: emulator)
  --profile NAME         the emulator's kernel profile
  --agent HOST:PORT      remote: the 'kvmconf agent' on the machine under test
  --token-file F         remote: the file holding the agent's token
  --bench NAME           run only this benchmark (repeatable): ${benchmarkNames().join(', ')}
  --repeat N             samples per parameter point (default: 10)
  --clock wall|cpu       time samples by elapsed time (default) or by the process's CPU time, which a
                         busy neighbour on a shared machine disturbs far less
  --output FILE          the JSON result (default: bench.json)
  --plant-slowdown PCT   self-tests: make every measured interval PCT% slower (a planted regression)
  --list                 list the benchmarks and exit
  -h, --help             this text

Exit codes: 0 measured; 2 usage error; 4 nothing measured (the backend is not available or lacks
what every benchmark needs).
`

async function bench(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      backend: { type: 'string', default: 'emulator' },
      profile: { type: 'string' },
      agent: { type: 'string' },
      'token-file': { type: 'string' },
      bench: { type: 'string', multiple: true },
      repeat: { type: 'string', default: '10' },
      clock: { type: 'string', default: 'wall' },
      output: { type: 'string', default: 'bench.json' },
      'plant-slowdown': { type: 'string' },
      list: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help) {
    process.stdout.write(HELP)
    return EXIT_OK
  }
  if (values.list) {
    for (const b of BENCHMARKS) process.stdout.write(`${b.name.padEnd(16)} ${b.description} (${b.unit} against ${b.x.name})\n`)
    return EXIT_OK
  }
  const backend = oneOf('backend', values.backend, BACKEND_NAMES)
  useAgent(backend, values.agent, values['token-file'])
  const clock = oneOf('clock', values.clock, ['wall', 'cpu'] as const satisfies readonly Clock[])
  const names = (values.bench ?? benchmarkNames()).map((n) => oneOf('bench', n, benchmarkNames()))
  const repeat = Number(values.repeat)
  if (!Number.isInteger(repeat) || repeat < 2) throw new UsageError(`--repeat ${values.repeat}: expected an integer of at least 2`)
  let plantSlowdown: number | undefined
  if (values['plant-slowdown'] !== undefined) {
    plantSlowdown = Number(values['plant-slowdown'].replace(/%$/, '')) / 100
    if (!(plantSlowdown > 0 && plantSlowdown < 0.95)) throw new UsageError(`--plant-slowdown ${values['plant-slowdown']}: expected a percentage between 0 and 95`)
  }
  if (!values.output.endsWith('.json')) throw new UsageError(`--output ${values.output}: the name must end in .json (the plots go next to it)`)

  const { loadBackend } = await import('../../backends/index.ts')
  const load = await loadBackend(backend, { profile: values.profile })
  if (!load.available) {
    process.stderr.write(`kvmconf bench: nothing measured: the ${backend} backend is not available: ${load.reason}\n`)
    return EXIT_ALL_SKIPPED
  }
  let result
  let runInfo
  try {
    runInfo = await runInfoOf(backend, load, values.profile)
    const chosen = BENCHMARKS.filter((b) => names.includes(b.name))
    result = await runBenchmarks(load.backend, chosen, runInfo, { repeat, clock, ...(plantSlowdown !== undefined ? { plantSlowdown } : {}) })
  } finally {
    await load.backend.close()
  }
  await writeFile(values.output, JSON.stringify(result, null, 2) + '\n')
  const base = values.output.replace(/\.json$/, '')
  const plots = plotBench(result)
  for (const p of plots) await writeFile(`${base}.${p.id}.svg`, p.svg)

  const rows = result.metrics.map((m) => {
    const v = m.samples.length > 0 ? `${median(m.samples).toPrecision(4)} ${m.unit} (min ${Math.min(...m.samples).toPrecision(4)}, max ${Math.max(...m.samples).toPrecision(4)})` : `skipped: ${m.skipped}`
    return `  ${metricKey(m).padEnd(48)} ${v}`
  })
  process.stdout.write(`kvmconf bench on ${backend} (${runInfo.kernel}), ${repeat} samples, ${clock} clock${plantSlowdown ? `, planted slowdown ${plantSlowdown * 100}%` : ''}\n${rows.join('\n')}\n`)
  process.stdout.write(`wrote ${values.output} and ${plots.map((p) => `${base}.${p.id}.svg`).join(', ')}\n`)
  return result.metrics.every((m) => m.samples.length === 0) ? EXIT_ALL_SKIPPED : EXIT_OK
}

export const benchVerb = { summary: 'run the registered benchmarks', run: (argv: string[]) => withUsage('bench', () => bench(argv)) }
