import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import { bitLocation, bitmapBytes, bitmapWords, filledBitmap } from './userfault-bitmap.ts'

describe('userfault bitmap layout', () => {
  test('round trip: the bits set are exactly the bits the words carry', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2000 }).chain((npages) =>
          fc.tuple(fc.constant(npages), fc.uniqueArray(fc.integer({ min: 0, max: npages - 1 }))),
        ),
        ([npages, bits]) => {
          const bytes = new Uint8Array(bitmapBytes(npages))
          for (const n of bits) {
            const { byte, mask } = bitLocation(n, npages)
            bytes[byte]! |= mask
          }
          const words = bitmapWords(bytes)
          expect(words.length).toBe(Math.ceil(npages / 64))
          const decoded: number[] = []
          words.forEach((w, i) => {
            for (let b = 0; b < 64; b++) if ((w >> BigInt(b)) & 1n) decoded.push(i * 64 + b)
          })
          expect(decoded).toEqual([...bits].sort((a, b) => a - b))
        },
      ),
    )
  })

  test('fill sets bits 0..npages-1 only', () => {
    expect([...bitmapWords(filledBitmap(70, true))]).toEqual([2n ** 64n - 1n, 63n])
    expect([...bitmapWords(filledBitmap(64, true))]).toEqual([2n ** 64n - 1n])
    expect([...bitmapWords(filledBitmap(70, false))]).toEqual([0n, 0n])
  })

  test('a bit outside the bitmap is a RangeError', () => {
    expect(() => bitLocation(70, 70)).toThrow(RangeError)
    expect(() => bitLocation(-1, 70)).toThrow(RangeError)
    expect(() => bitLocation(1.5, 70)).toThrow(RangeError)
  })
})
