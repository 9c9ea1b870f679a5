// UFFDIO_REGISTER slot id `id`'s memslot mapping (both pages) with mode MISSING or MINOR, opening the
// run's userfaultfd first if none is open (userfaultfd(2), then UFFDIO_API with no features, as
// uffd_setup_demand_paging() does). The model: accepted (the mapping is shmem, which both modes take;
// vma_can_userfault()); a range this uffd had registered takes the new mode (userfaultfd_register_range()).
// The ioctls it reports include UFFDIO_COPY, and UFFDIO_CONTINUE exactly for MINOR ("CONTINUE ioctl is
// only supported for MINOR ranges", userfaultfd_register()).

import type fc from 'fast-check'
import { _UFFDIO_CONTINUE, _UFFDIO_COPY, UFFDIO_REGISTER_MODE_MINOR, UFFDIO_REGISTER_MODE_MISSING } from '../../../harness/uapi/userfaultfd.ts'
import type { UffdMode } from '../host-model.ts'
import { PAGE, SLOT_PAGES, type FuzzModel, type SlotId } from '../model.ts'
import type { FuzzReal } from '../real.ts'

export class UffdRegister implements fc.AsyncCommand<FuzzModel, FuzzReal> {
  constructor(readonly id: SlotId, readonly mode: UffdMode) {}

  check(_m: Readonly<FuzzModel>): boolean {
    return true
  }

  async run(m: FuzzModel, r: FuzzReal): Promise<void> {
    const uffd = await r.openUffd()
    m.host.uffd.open = true
    const bit = this.mode === 'MINOR' ? UFFDIO_REGISTER_MODE_MINOR : UFFDIO_REGISTER_MODE_MISSING
    const { ioctls } = await uffd.register({ start: r.host.get(this.id)!.mem.addr, len: BigInt(SLOT_PAGES) * PAGE }, bit)
    const has = (nr: number) => (ioctls >> BigInt(nr)) & 1n
    if (has(_UFFDIO_COPY) !== 1n || has(_UFFDIO_CONTINUE) !== (this.mode === 'MINOR' ? 1n : 0n)) {
      throw new Error(`${this.toString()}: the model predicts ioctls with UFFDIO_COPY and ${this.mode === 'MINOR' ? 'with' : 'without'} UFFDIO_CONTINUE, the backend gave 0x${ioctls.toString(16)}`)
    }
    m.host.uffd.modes.set(this.id, this.mode)
  }

  toString(): string {
    return `UFFDIO_REGISTER(slot ${this.id} memory, ${this.mode})`
  }
}
