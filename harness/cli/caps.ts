// kvmconf caps: the capability table of a backend (KVM_CHECK_EXTENSION on /dev/kvm and per VM type).

import { parseArgs } from 'node:util'
import { BACKEND_NAMES } from '../backend-names.ts'
import { supportedVmTypes, vmTypeName } from '../gating.ts'
import { parseUserfaultCap, probeKvmUserfault } from '../kvm-util/userfault.ts'
import { KVM_CAP_NAMES } from '../uapi/kvm.ts'
import { EXIT_FAIL, EXIT_OK, UsageError, oneOf, withUsage } from './usage.ts'

const HELP = `Usage: kvmconf caps [options]

Prints what KVM_CHECK_EXTENSION answers on /dev/kvm and on a VM of each type KVM_CAP_VM_TYPES lists,
and whether the kernel has KVM Userfault (probed with KVM_SET_USER_MEMORY_REGION2, not by a number).

Options:
  --backend NAME   ${BACKEND_NAMES.join(' | ')} (default: emulator)
  --profile NAME   the emulator's kernel profile
  --userfault-cap N
                   also ask KVM_CHECK_EXTENSION(N) as KVM_CAP_USERFAULT (239 in the series' v1/v2, 243 in v3)
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
      'userfault-cap': { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help) {
    process.stdout.write(HELP)
    return EXIT_OK
  }
  const name = oneOf('backend', values.backend, BACKEND_NAMES)
  const userfaultCap = values['userfault-cap'] === undefined ? null : parseUserfaultCap(values['userfault-cap'])
  if (userfaultCap !== null && typeof userfaultCap !== 'number') throw new UsageError(userfaultCap.error)
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
    if (userfaultCap !== null) caps.push({ cap: userfaultCap, name: 'KVM_CAP_USERFAULT' })
    const probe = await probeKvmUserfault(kvm)
    const userfault = probe.supported ? 'KVM Userfault: yes (KVM_SET_USER_MEMORY_REGION2 takes KVM_MEM_USERFAULT)' : `KVM Userfault: no (${probe.reason})`
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
      process.stdout.write(JSON.stringify({ info, apiVersion: await kvm.getApiVersion(), system, vm: perVm, userfault: probe }, null, 2) + '\n')
      return EXIT_OK
    }
    const vmNames = Object.keys(perVm)
    process.stdout.write(`${kvm.name}: kernel ${info.kernelRelease} (${info.arch}) on ${info.host}, KVM_GET_API_VERSION ${await kvm.getApiVersion()}\n`)
    process.stdout.write(`host backings: ${info.backings.join(', ')}; backend features: ${info.features.join(', ') || 'none'}\n`)
    process.stdout.write(`${userfault}\n\n`)
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
