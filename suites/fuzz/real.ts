// What the fuzzer's commands act on: one VM of the backend under test, one vCPU (when the backend runs
// guests), and per slot id host memory and a userfault bitmap made once, so a slot deleted and created
// again names the same ones.

import type { Backend, HostMapping, UserfaultBitmap, Vcpu, Vm } from '../../harness/backend.ts'
import { PAGE, SLOT_IDS, SLOT_PAGES, type SlotId } from './model.ts'

export interface FuzzReal {
  kvm: Backend
  vm: Vm
  vcpu: Vcpu | null
  host: Map<SlotId, { mem: HostMapping; bitmap: UserfaultBitmap }>
  /** KVM_SET_USER_MEMORY_REGION2 of slot `id` at `gpa` with `flags` (size 0 deletes). */
  region2(id: SlotId, gpa: bigint, flags: number, size?: bigint): Promise<void>
  close(): Promise<void>
}

export async function createReal(kvm: Backend, withVcpu: boolean): Promise<FuzzReal> {
  const vm = await kvm.createVm()
  const host = new Map<SlotId, { mem: HostMapping; bitmap: UserfaultBitmap }>()
  for (const id of SLOT_IDS) {
    const mem = await kvm.mmap({ size: BigInt(SLOT_PAGES) * PAGE, backing: 'anonymous' })
    const bitmap = await kvm.createUserfaultBitmap(SLOT_PAGES)
    await bitmap.fill(false)
    host.set(id, { mem, bitmap })
  }
  const vcpu = withVcpu ? await vm.createVcpu(0) : null
  return {
    kvm, vm, vcpu, host,
    region2: (id, gpa, flags, size = BigInt(SLOT_PAGES) * PAGE) =>
      vm.setUserMemoryRegion2({
        slot: id, flags, guestPhysAddr: gpa, memorySize: size, userspaceAddr: host.get(id)!.mem.addr,
        userfaultBitmap: host.get(id)!.bitmap.addr,
      }),
    async close() {
      await vm.close()
      for (const { mem, bitmap } of host.values()) {
        await bitmap.close()
        await mem.close()
      }
    },
  }
}
