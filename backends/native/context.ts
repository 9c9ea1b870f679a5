// What every native object shares: the addon and the set of objects still open, so that
// Backend.close() can free whatever a test left behind.

import type { NativeAddon } from './addon.ts'

export interface Closable {
  close(): Promise<void>
}

export class NativeContext {
  readonly open = new Set<Closable>()
  constructor(readonly addon: NativeAddon, readonly pageSize: number) {}

  track<T extends Closable>(obj: T): T {
    this.open.add(obj)
    return obj
  }

  untrack(obj: Closable): void {
    this.open.delete(obj)
  }
}
