// close() the run's userfaultfd. The model: every range it registered is unregistered
// (userfaultfd_release() -> userfaultfd_release_all()), so accesses no longer block; the next
// UFFDIO_REGISTER opens a new one.

import type fc from 'fast-check'
import type { FuzzModel } from '../model.ts'
import type { FuzzReal } from '../real.ts'

export class UffdClose implements fc.AsyncCommand<FuzzModel, FuzzReal> {
  check(m: Readonly<FuzzModel>): boolean {
    return m.host.uffd.open
  }

  async run(m: FuzzModel, r: FuzzReal): Promise<void> {
    const uffd = r.uffd!
    r.uffd = null
    m.host.uffd = { open: false, modes: new Map() }
    await uffd.close()
  }

  toString(): string {
    return 'close(userfaultfd)'
  }
}
