// UserfaultBitmap over the addon: page-aligned anonymous memory holding ceil(npages/64) u64 words;
// set uses an atomic OR, clear an atomic AND with release ordering (the series' resolver protocol).

import type { UserfaultBitmap } from '../../harness/backend.ts'
import { type Handle, native } from './addon.ts'
import type { NativeContext } from './context.ts'
import { count } from './u64.ts'

export class NativeUserfaultBitmap implements UserfaultBitmap {
  readonly addr: bigint

  constructor(private readonly ctx: NativeContext, readonly handle: Handle, readonly npages: number) {
    this.addr = native(() => ctx.addon.bitmapAddr(handle))
    ctx.track(this)
  }

  async set(n: number): Promise<void> {
    const i = count(n, 'n')
    native(() => this.ctx.addon.bitmapSet(this.handle, i))
  }

  async clear(n: number): Promise<void> {
    const i = count(n, 'n')
    native(() => this.ctx.addon.bitmapClear(this.handle, i))
  }

  async test(n: number): Promise<boolean> {
    const i = count(n, 'n')
    return native(() => this.ctx.addon.bitmapTest(this.handle, i))
  }

  async fill(value: boolean): Promise<void> {
    native(() => this.ctx.addon.bitmapFill(this.handle, value))
  }

  async words(): Promise<BigUint64Array> {
    return native(() => this.ctx.addon.bitmapWords(this.handle))
  }

  async close(): Promise<void> {
    native(() => this.ctx.addon.bitmapClose(this.handle))
    this.ctx.untrack(this)
  }
}
