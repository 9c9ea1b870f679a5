// kvmconf caps: the capability table of a backend (KVM_CHECK_EXTENSION on /dev/kvm and per VM type).

import { parseArgs } from 'node:util'
import { BACKEND_NAMES } from '../backend-names.ts'
import { supportedVmTypes, vmTypeName } from '../gating.ts'
import { KVM_CAP_NAMES } from '../uapi/kvm.ts'
import { EXIT_FAIL, EXIT_OK, oneOf, withUsage } from './usage.ts'

const HELP = `Usage: kvmconf caps [options]

Prints what KVM_CHECK_EXTENSION answers on /dev/kvm and on a VM of each type KVM_CAP_VM_TYPES lists.

Options:
  --backend NAME   ${BACKEND_NAMES.join(' | ')} (default: emulator)
  --profile NAME   the emulator's kernel profile
  --json           machine-readable output
  -h, --help       this text
`

async function caps(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      backend: { type: 'string', default: 'emulator' },
      profile: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help) {
    process.stdout.write(HELP)
    return EXIT_OK
  }
  const name = oneOf('backend', values.backend, BACKEND_NAMES)
  const { loadBackend } = await import('../../backends/index.ts')
  const load = await loadBackend(name, { profile: values.profile })
  if (!load.available) {
    process.stderr.write(`kvmconf caps: the ${name} backend is not available: ${load.reason}\n`)
    return EXIT_FAIL
  }
  const kvm = load.backend
  try {
    const info = await kvm.info()
    const caps = Object.entries(KVM_CAP_NAMES).map(([n, capName]) => ({ cap: Number(n), name: capName }))
    const system: Record<string, number> = {}
    for (const { cap, name: capName } of caps) system[capName] = await kvm.checkExtension(cap)
    const perVm: Record<string, Record<string, number>> = {}
    for (const type of await supportedVmTypes(kvm)) {
      const vm = await kvm.createVm({ type })
      const answers: Record<string, number> = {}
      for (const { cap, name: capName } of caps) answers[capName] = await vm.checkExtension(cap)
      perVm[vmTypeName(type)] = answers
      await vm.close()
    }
    if (values.json) {
      process.stdout.write(JSON.stringify({ info, apiVersion: await kvm.getApiVersion(), system, vm: perVm }, null, 2) + '\n')
      return EXIT_OK
    }
    const vmNames = Object.keys(perVm)
    process.stdout.write(`${kvm.name}: kernel ${info.kernelRelease} (${info.arch}) on ${info.host}, KVM_GET_API_VERSION ${await kvm.getApiVersion()}\n`)
    process.stdout.write(`host backings: ${info.backings.join(', ')}; backend features: ${info.features.join(', ') || 'none'}\n\n`)
    const width = Math.max(...caps.map((c) => c.name.length))
    const cols = ['/dev/kvm', ...vmNames]
    process.stdout.write(`${'capability'.padEnd(width + 6)}${cols.map((c) => c.padStart(Math.max(10, c.length + 2))).join('')}\n`)
    for (const { cap, name: capName } of caps) {
      const row = [system[capName], ...vmNames.map((v) => perVm[v]?.[capName])]
      process.stdout.write(
        `${`${capName} (${cap})`.padEnd(width + 6)}${row.map((v, i) => String(v).padStart(Math.max(10, (cols[i] ?? '').length + 2))).join('')}\n`,
      )
    }
    return EXIT_OK
  } finally {
    await kvm.close()
  }
}

export const capsVerb = { summary: "print a backend's capabilities", run: (argv: string[]) => withUsage('caps', () => caps(argv)) }
