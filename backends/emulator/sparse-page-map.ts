// A sparse map from page index (up to 2^53) to a small non-negative integer: PageStore's slots, and (with
// every value 0) Stage2's set of 4 KiB-mapped gfns.
//
// Pages are looked up in runs of 512 (one 2 MiB region): a Map from run number to an Int32Array of the
// run's values. Demand paging touches pages in order, so one Map lookup serves 512 pages, and a page
// added is an array store instead of a Map insertion (measured on the project's host: ~10x faster than a
// Map keyed by page index, whose rehashing grows with the store).

const RUN = 512

export class SparsePageMap {
  /** Run number -> value + 1 for each page of the run (0: absent), then how many pages the run holds. */
  private readonly runs = new Map<number, Int32Array>()
  private count = 0

  get size(): number {
    return this.count
  }

  get(index: number): number | undefined {
    const run = this.runs.get(Math.floor(index / RUN))
    if (run === undefined) return undefined
    const v = run[index % RUN]!
    return v === 0 ? undefined : v - 1
  }

  has(index: number): boolean {
    return this.get(index) !== undefined
  }

  /** Sets page `index` to `value` (0 <= value < 2^31 - 1). */
  set(index: number, value: number): void {
    if (!(value >= 0 && value < 0x7fff_ffff)) throw new RangeError(`SparsePageMap: value ${value} out of range`)
    const key = Math.floor(index / RUN)
    let run = this.runs.get(key)
    if (run === undefined) {
      run = new Int32Array(RUN + 1)
      this.runs.set(key, run)
    }
    if (run[index % RUN] === 0) {
      this.count++
      run[RUN]!++
    }
    run[index % RUN] = value + 1
  }

  delete(index: number): void {
    const key = Math.floor(index / RUN)
    const run = this.runs.get(key)
    if (run === undefined || run[index % RUN] === 0) return
    run[index % RUN] = 0
    this.count--
    // A run with no page left goes, so that a store punched empty holds nothing.
    if (--run[RUN]! === 0) this.runs.delete(key)
  }

  clear(): void {
    this.runs.clear()
    this.count = 0
  }

  /** Every page index held, in no particular order; safe to delete from while iterating. */
  *keys(): IterableIterator<number> {
    for (const [index] of this.entries()) yield index
  }

  /** Every [index, value] pair, in no particular order; safe to delete from while iterating. */
  *entries(): IterableIterator<[number, number]> {
    for (const [key, run] of [...this.runs]) {
      for (let i = 0; i < RUN; i++) {
        const v = run[i]!
        if (v !== 0) yield [key * RUN + i, v - 1]
      }
    }
  }
}
