// A remote-backend client run as its own process by the self-tests (spec-support.ts spawnClient), so
// that a test can kill it or cut its network. It connects to KVMCONF_AGENT with KVMCONF_TOKEN_FILE and
// prints one line per event on stdout. Every wait is bounded.
//
//   hold   makes VMs, vCPUs, mappings (64 MiB, touched), a memslot each, a guest_memfd, a bitmap and a
//          userfaultfd where the backend can; prints `ready <usage>`; then waits to be killed (60 s at most)
//   poll   prints `ready`, then calls checkExtension every 50 ms until one fails (30 s at most) and
//          prints `error <json>`: the error's name, code, agent, message and how long that call took

import { AgentError } from './agent-error.ts'
import type { RemoteBackend } from './client.ts'
import { loadRemote } from './load.ts'
import { setTimeout as sleep } from 'node:timers/promises'

const MiB = 1 << 20

async function hold(kvm: RemoteBackend): Promise<void> {
  const info = await kvm.info()
  for (let i = 0; i < 3; i++) {
    const vm = await kvm.createVm()
    const mem = await kvm.mmap({ size: 32 * MiB, backing: i === 0 ? 'anonymous' : 'shmem' })
    if (i < 2) await mem.fill(0, 32 * MiB, 0x5a)
    await vm.setUserMemoryRegion({ slot: 1, flags: 0, guestPhysAddr: 1n << 32n, memorySize: 32 * MiB, userspaceAddr: mem.addr })
    if (info.features.includes('vcpu')) {
      await vm.createVcpu(0)
      await vm.createVcpu(1)
    }
    await vm.createGuestMemfd({ size: 2 * MiB }).catch(() => undefined)
  }
  await kvm.createUserfaultBitmap(512)
  if (info.features.includes('userfaultfd')) await kvm.openUffd({ via: 'syscall' })
  process.stdout.write(`ready ${JSON.stringify((await kvm.usage()).used, (_, v) => (typeof v === 'bigint' ? v.toString() : v))}\n`)
  await sleep(60_000)
}

async function poll(kvm: RemoteBackend): Promise<number> {
  process.stdout.write('ready\n')
  for (let i = 0; i < 600; i++) {
    const start = Date.now()
    try {
      await kvm.checkExtension(1)
    } catch (e) {
      const err = e as Error & { code?: string; agent?: string }
      const report = { name: err.name, code: err.code, agent: AgentError.is(e) ? e.agent : undefined, message: err.message, ms: Date.now() - start }
      process.stdout.write(`error ${JSON.stringify(report)}\n`)
      return 0
    }
    await sleep(50)
  }
  process.stdout.write('no error within 30 s\n')
  return 1
}

const scenario = process.argv[2]
const load = await loadRemote()
if (!load.available) {
  process.stdout.write(`unavailable ${load.reason}\n`)
  process.exit(2)
}
const kvm = load.backend as RemoteBackend
if (scenario === 'hold') await hold(kvm)
else if (scenario === 'poll') process.exitCode = await poll(kvm)
else process.stdout.write(`unknown scenario ${scenario}\n`)
process.exit()
