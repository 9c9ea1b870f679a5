// What the fuzzer's commands act on: one VM of the backend under test, one vCPU (when the backend runs
// guests), per slot id host memory and a userfault bitmap made once (so a slot deleted and created again
// names the same ones), and at most one userfaultfd, opened when a command first registers a range.
//
// Host memory is shmem for the current command set, so it can be punched (MADV_REMOVE), registered
// MINOR and filled through a second mapping of the same file (`alias`, made on first use), as
// demand_paging_test -u MINOR -s shmem does; the first command set ran on anonymous memory and still does.
//
// The harness never touches the primary mappings itself: a registered page would block the calling
// thread on its own userfaultfd. Host writes go through the alias, which is never registered.
//
// close() must leave nothing behind, even after a failed command left the vCPU blocked: it closes the
// userfaultfd first (userfaultfd_release() unregisters every range and wakes every waiter), waits for
// the run in flight with a deadline (kicking it if need be), and only then closes the VM and the memory.

import type { Backend, Backing, HostMapping, Uffd, UserfaultBitmap, Vcpu, Vm } from '../../harness/backend.ts'
import { O_CLOEXEC, O_NONBLOCK } from '../../harness/uapi/fs.ts'
import { PAGE, SLOT_IDS, SLOT_PAGES, type SlotId } from './model.ts'

/** How long close() waits for a vCPU call in flight after waking it. */
const SETTLE_MS = 5_000

export interface SlotHost {
  mem: HostMapping
  bitmap: UserfaultBitmap
  /** A second mapping of `mem`'s file, never registered (shmem only; made by `alias()`). */
  alias?: HostMapping
}

export interface FuzzReal {
  kvm: Backend
  vm: Vm
  vcpu: Vcpu | null
  host: Map<SlotId, SlotHost>
  /** The run's userfaultfd, or null while none is open. */
  uffd: Uffd | null
  /** The vCPU call (KVM_RUN, KVM_PRE_FAULT_MEMORY) that has not settled yet, for close(). */
  inflight: Promise<unknown> | null
  /** KVM_SET_USER_MEMORY_REGION2 of slot `id` at `gpa` with `flags` (size 0 deletes). */
  region2(id: SlotId, gpa: bigint, flags: number, size?: bigint): Promise<void>
  /** The alias mapping of slot id `id`'s memory, made on first use. */
  alias(id: SlotId): Promise<HostMapping>
  /** The userfaultfd, opened (userfaultfd(2), O_CLOEXEC|O_NONBLOCK, UFFDIO_API with no features) if closed. */
  openUffd(): Promise<Uffd>
  /** Starts a vCPU call and remembers it until it settles. */
  track<T>(call: Promise<T>): Promise<T>
  close(): Promise<void>
}

export async function createReal(kvm: Backend, withVcpu: boolean, backing: Backing): Promise<FuzzReal> {
  const vm = await kvm.createVm()
  const host = new Map<SlotId, SlotHost>()
  for (const id of SLOT_IDS) {
    const mem = await kvm.mmap({ size: BigInt(SLOT_PAGES) * PAGE, backing })
    const bitmap = await kvm.createUserfaultBitmap(SLOT_PAGES)
    await bitmap.fill(false)
    host.set(id, { mem, bitmap })
  }
  const vcpu = withVcpu ? await vm.createVcpu(0) : null
  const real: FuzzReal = {
    kvm, vm, vcpu, host, uffd: null, inflight: null,
    region2: (id, gpa, flags, size = BigInt(SLOT_PAGES) * PAGE) =>
      vm.setUserMemoryRegion2({
        slot: id, flags, guestPhysAddr: gpa, memorySize: size, userspaceAddr: host.get(id)!.mem.addr,
        userfaultBitmap: host.get(id)!.bitmap.addr,
      }),
    async alias(id) {
      const h = host.get(id)!
      h.alias ??= await h.mem.alias()
      return h.alias
    },
    async openUffd() {
      if (real.uffd !== null) return real.uffd
      const uffd = await kvm.openUffd({ via: 'syscall', flags: O_CLOEXEC | O_NONBLOCK })
      real.uffd = uffd
      await uffd.api(0)
      return uffd
    },
    track(call) {
      const tracked = call.finally(() => {
        if (real.inflight === tracked) real.inflight = null
      })
      real.inflight = tracked
      tracked.catch(() => {})
      return tracked
    },
    async close() {
      const problems: string[] = []
      const attempt = async (what: string, f: () => Promise<unknown>) => {
        try {
          await f()
        } catch (e) {
          problems.push(`${what}: ${e instanceof Error ? e.message : String(e)}`)
        }
      }
      if (real.uffd !== null) await attempt('closing the userfaultfd', () => real.uffd!.close())
      real.uffd = null
      if (real.inflight !== null && !(await settles(real.inflight, SETTLE_MS))) {
        await attempt('kicking the vCPU', () => vcpu!.kick())
        if (!(await settles(real.inflight, SETTLE_MS))) problems.push(`a vCPU call was still in flight ${2 * SETTLE_MS} ms after its userfaultfd was closed`)
      }
      await attempt('closing the VM', () => vm.close())
      for (const h of host.values()) {
        if (h.alias !== undefined) await attempt('unmapping an alias', () => h.alias!.close())
        await attempt('closing a bitmap', () => h.bitmap.close())
        await attempt('unmapping slot memory', () => h.mem.close())
      }
      if (problems.length > 0) throw new Error(`tearing the run down: ${problems.join('; ')}`)
    },
  }
  return real
}

/** Whether `p` settles (either way) within `ms`. */
export async function settles(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const done = await Promise.race([
    p.then(() => true, () => true),
    new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), ms)
    }),
  ])
  clearTimeout(timer)
  return done
}
