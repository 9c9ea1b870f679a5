// A set of page numbers kept as sorted, disjoint, non-adjacent half-open ranges [from, to): the shape of
// "which pages of a mapping have a PTE". A 64 GiB fill is one range, and a sequential guest pass merges
// into one as it goes, so the host's page tables cost memory only where they are fragmented.

export class RangeSet {
  /** from0, to0, from1, to1, ...: sorted, disjoint, and never touching (touching ranges are merged). */
  private readonly bounds: number[] = []

  get rangeCount(): number {
    return this.bounds.length >> 1
  }

  /** The index of the first range whose end is above `n` (the range holding `n`, or the next one). */
  private firstEndingAfter(n: number): number {
    let lo = 0
    let hi = this.bounds.length >> 1
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (this.bounds[2 * mid + 1]! > n) hi = mid
      else lo = mid + 1
    }
    return lo
  }

  has(n: number): boolean {
    const i = this.firstEndingAfter(n)
    return i < this.bounds.length >> 1 && this.bounds[2 * i]! <= n
  }

  /** The first number in [from, to) not in the set, or undefined when the set covers all of it. */
  firstMissing(from: number, to: number): number | undefined {
    let cur = from
    for (let i = this.firstEndingAfter(from); cur < to && i < this.bounds.length >> 1; i++) {
      if (this.bounds[2 * i]! > cur) return cur
      cur = this.bounds[2 * i + 1]!
    }
    return cur < to ? cur : undefined
  }

  add(from: number, to: number): void {
    if (from >= to) return
    // Ranges that overlap or touch [from, to) are merged into it.
    const first = this.firstEndingAfter(from - 1)
    let last = first
    let lo = from
    let hi = to
    while (last < this.bounds.length >> 1 && this.bounds[2 * last]! <= to) {
      lo = Math.min(lo, this.bounds[2 * last]!)
      hi = Math.max(hi, this.bounds[2 * last + 1]!)
      last++
    }
    if (last - first === 1) {
      // One range grows (a sequential pass adds each page next to the last): no splice, no allocation.
      this.bounds[2 * first] = lo
      this.bounds[2 * first + 1] = hi
      return
    }
    this.bounds.splice(2 * first, 2 * (last - first), lo, hi)
  }

  delete(from: number, to: number): void {
    if (from >= to) return
    const first = this.firstEndingAfter(from)
    let last = first
    const kept: number[] = []
    while (last < this.bounds.length >> 1 && this.bounds[2 * last]! < to) {
      const [lo, hi] = [this.bounds[2 * last]!, this.bounds[2 * last + 1]!]
      if (lo < from) kept.push(lo, from)
      if (hi > to) kept.push(to, hi)
      last++
    }
    this.bounds.splice(2 * first, 2 * (last - first), ...kept)
  }

  /** The ranges, for tests. */
  ranges(): [number, number][] {
    const out: [number, number][] = []
    for (let i = 0; i < this.bounds.length; i += 2) out.push([this.bounds[i]!, this.bounds[i + 1]!])
    return out
  }
}
