// The KVM Userfault series' per-slot bitmap as it sits in host memory (§F.3): ceil(npages/64) 64-bit
// little-endian words, bit n%64 of word n/64 for page base_gfn + n, the layout of a kernel
// `unsigned long` bitmap on x86-64. The memory is the test's; these helpers only locate and lay out bits.

/** The bitmap's size in bytes: whole 64-bit words. */
export function bitmapBytes(npages: number): number {
  return Math.ceil(npages / 64) * 8
}

/** Where bit `n` lives: its byte offset and the mask within that byte. */
export function bitLocation(n: number, npages: number): { byte: number; mask: number } {
  if (!Number.isInteger(n) || n < 0 || n >= npages) throw new RangeError(`bit ${n} of a ${npages}-page bitmap`)
  return { byte: n >> 3, mask: 1 << (n & 7) }
}

/** The bytes of a bitmap with bits 0..npages-1 all `value`; bits past npages stay clear (bitmap_fill). */
export function filledBitmap(npages: number, value: boolean): Uint8Array {
  const bytes = new Uint8Array(bitmapBytes(npages))
  if (!value) return bytes
  bytes.fill(0xff, 0, npages >> 3)
  if (npages & 7) bytes[npages >> 3] = (1 << (npages & 7)) - 1
  return bytes
}

/** The words KVM reads, from the bitmap's bytes. */
export function bitmapWords(bytes: Uint8Array): BigUint64Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  return BigUint64Array.from({ length: bytes.byteLength >> 3 }, (_, i) => view.getBigUint64(i * 8, true))
}
