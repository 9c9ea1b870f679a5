// A KVM Userfault bitmap in the emulated process's memory (../userfault-bitmap.ts for its layout).

import type { UserfaultBitmap } from '../../../harness/backend.ts'
import { bitLocation, bitmapBytes, bitmapWords, filledBitmap } from '../userfault-bitmap.ts'
import type { EmulatorMapping } from './mapping.ts'

export class EmulatorUserfaultBitmap implements UserfaultBitmap {
  readonly addr: bigint

  constructor(
    private readonly mapping: EmulatorMapping,
    readonly npages: number,
  ) {
    this.addr = mapping.addr
  }

  /**
   * atomic fetch_or / fetch_and: the read and the write happen in one step, with no await between, so
   * that calls in flight together (several resolver "threads") cannot lose each other's bits.
   */
  private async update(n: number, set: boolean): Promise<void> {
    const { byte, mask } = bitLocation(n, this.npages)
    this.mapping.updateByte(byte, (old) => (set ? old | mask : old & ~mask))
  }

  set(n: number): Promise<void> {
    return this.update(n, true)
  }

  /** Single-threaded model: the release ordering the series asks for holds trivially. */
  clear(n: number): Promise<void> {
    return this.update(n, false)
  }

  async test(n: number): Promise<boolean> {
    const { byte, mask } = bitLocation(n, this.npages)
    const [value] = await this.mapping.read(byte, 1)
    return (value! & mask) !== 0
  }

  fill(value: boolean): Promise<void> {
    return this.mapping.write(0, filledBitmap(this.npages, value))
  }

  async words(): Promise<BigUint64Array> {
    return bitmapWords(await this.mapping.read(0, bitmapBytes(this.npages)))
  }

  close(): Promise<void> {
    return this.mapping.close()
  }
}
