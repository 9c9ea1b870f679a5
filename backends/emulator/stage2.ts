// A VM's stage-2 (TDP) mappings as far as the rules need them: which gfns KVM has mapped, and at what
// size, 4 KiB or 2 MiB (x86's PG_LEVEL_4K and PG_LEVEL_2M leaf SPTEs). Data never lives here: guest
// accesses read and write the memory behind the slot as it is now (guest-memory.ts); what the mappings
// decide is whether an access is a fault (and so reaches the fault-time checks, KVM Userfault's bitmap
// among them) or is already mapped.
//
// The sets hold mapped gfns, not ranges, so zapping a 2^31-page slot costs what is mapped, not its size.

import { SparsePageMap } from './sparse-page-map.ts'

export type MappingLevel = '4K' | '2M'

/** KVM_PAGES_PER_HPAGE(PG_LEVEL_2M) */
export const PAGES_PER_2M = 512

/** The first gfn of the 2 MiB region holding `gfn`. */
export function hugeBase(gfn: number): number {
  return gfn - (gfn % PAGES_PER_2M)
}

/** What self-tests see of a VM's stage-2 (backends/emulator/index.ts stage2Of()). */
export interface Stage2View {
  /** The level `gfn` is mapped at, or null when KVM would fault on it. */
  level(gfn: number): MappingLevel | null
  /** Every leaf mapping, by first gfn, in gfn order. */
  mappings(): { gfn: number; level: MappingLevel }[]
}

export class Stage2 implements Stage2View {
  /** gfns with a 4 KiB leaf (a page map used as a set: a fault adds to it without a Set's rehashing). */
  private readonly small = new SparsePageMap()
  /** First gfns of 2 MiB leaves. */
  private readonly huge = new Set<number>()

  level(gfn: number): MappingLevel | null {
    if (this.small.has(gfn)) return '4K'
    return this.huge.has(hugeBase(gfn)) ? '2M' : null
  }

  /** Installs a leaf for `gfn`; a 2 MiB leaf replaces the 4 KiB leaves under it (the table they were in). */
  map(gfn: number, level: MappingLevel): void {
    if (level === '4K') {
      this.small.set(gfn, 0)
      return
    }
    const base = hugeBase(gfn)
    for (const g of this.smallIn(base, base + PAGES_PER_2M)) this.small.delete(g)
    this.huge.add(base)
  }

  /** kvm_unmap_gfn_range()/kvm_zap_gfn_range(): every leaf that maps a gfn of [start, end). */
  zap(start: number, end: number): void {
    for (const g of this.smallIn(start, end)) this.small.delete(g)
    for (const base of [...this.huge]) if (base < end && base + PAGES_PER_2M > start) this.huge.delete(base)
  }

  /** kvm_mmu_zap_all_fast(): every leaf of the VM. */
  zapAll(): void {
    this.small.clear()
    this.huge.clear()
  }

  /** Eager page splitting: each 2 MiB leaf over [start, end) becomes 512 4 KiB leaves mapping the same pages. */
  split(start: number, end: number): void {
    for (const base of [...this.huge]) {
      if (base >= end || base + PAGES_PER_2M <= start) continue
      this.huge.delete(base)
      for (let g = base; g < base + PAGES_PER_2M; g++) this.small.set(g, 0)
    }
  }

  /** The first gfns of the 2 MiB regions inside [start, end) that hold at least one 4 KiB leaf. */
  regionsWithSmall(start: number, end: number): number[] {
    const regions = new Set<number>()
    for (const g of this.smallIn(start, end)) regions.add(hugeBase(g))
    return [...regions].sort((a, b) => a - b)
  }

  mappings(): { gfn: number; level: MappingLevel }[] {
    const all = [
      ...[...this.small.keys()].map((gfn) => ({ gfn, level: '4K' as const })),
      ...[...this.huge].map((gfn) => ({ gfn, level: '2M' as const })),
    ]
    return all.sort((a, b) => a.gfn - b.gfn)
  }

  /** The 4 KiB-mapped gfns of [start, end), walking whichever is smaller, the range or the set. */
  private smallIn(start: number, end: number): number[] {
    const out: number[] = []
    if (end - start <= this.small.size) {
      for (let g = start; g < end; g++) if (this.small.has(g)) out.push(g)
      return out
    }
    for (const g of this.small.keys()) if (g >= start && g < end) out.push(g)
    return out
  }
}
