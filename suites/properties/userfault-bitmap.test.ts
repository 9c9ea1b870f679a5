// Properties of the KVM Userfault bitmap as KVM reads it (upstream-selftests.md §F.3): ceil(npages/64)
// 64-bit words, bit n in bit n % 64 of word n / 64, and set/clear/test round trips. The layout is the
// encoder we own (STYLE.md §2.2: a round-trip property for every encoder); that bit n is gfn base + n is
// shown through a vCPU in userfault-exits.test.ts. fast-check prints the seed and path of a failure.

import fc from 'fast-check'
import { describe, expect, test } from '../../harness/test.ts'

/** The words KVM reads for `bits` set among `npages`: the kernel's layout, written out. */
function kernelWords(npages: number, bits: ReadonlySet<number>): bigint[] {
  const words = new Array<bigint>(Math.ceil(npages / 64)).fill(0n)
  for (const n of bits) words[Math.floor(n / 64)]! |= 1n << BigInt(n % 64)
  return words
}

/** A bitmap size and a sequence of set (true) / clear (false) operations on bits inside it. */
const ops = fc.integer({ min: 1, max: 300 }).chain((npages) =>
  fc.record({
    npages: fc.constant(npages),
    ops: fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: npages - 1 })), { maxLength: 24 }),
  }),
)

describe('properties: userfault bitmap', () => {
  test('ceil(npages/64) words, bit n in bit n%64 of word n/64, set/clear/test round trip', async ({ kvm }) => {
    await fc.assert(
      fc.asyncProperty(ops, async ({ npages, ops }) => {
        const bitmap = await kvm.createUserfaultBitmap(npages)
        try {
          await bitmap.fill(false)
          const model = new Set<number>()
          for (const [set, n] of ops) {
            if (set) {
              await bitmap.set(n)
              model.add(n)
            } else {
              await bitmap.clear(n)
              model.delete(n)
            }
            expect(await bitmap.test(n), `test(${n}) after ${set ? 'set' : 'clear'}(${n})`).toBe(set)
          }
          const words = await bitmap.words()
          expect(words.length, `words of a ${npages}-page bitmap`).toBe(Math.ceil(npages / 64))
          expect([...words], 'the words KVM reads').toEqual(kernelWords(npages, model))
          for (const n of new Set(ops.map(([, n]) => n))) expect(await bitmap.test(n), `test(${n})`).toBe(model.has(n))
        } finally {
          await bitmap.close()
        }
      }),
      { numRuns: 40 },
    )
  })

  test('concurrent set and clear from several threads lose no update', async ({ kvm }) => {
    // Each "thread" is a chain of awaited calls, all chains in flight at once, so the backend sees the
    // calls interleaved (the emulator between its own awaits, the agent between requests, the addon on
    // the JavaScript thread). Thread t owns the bits n with n % threads == t, so threads share words and
    // only a read-modify-write that is not atomic can lose another thread's update.
    const plan = fc.record({ npages: fc.integer({ min: 4, max: 200 }), threads: fc.integer({ min: 2, max: 4 }) }).chain(({ npages, threads }) =>
      fc.record({
        npages: fc.constant(npages),
        perThread: fc.tuple(...Array.from({ length: threads }, (_, t) =>
          fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: Math.floor((npages - 1 - t) / threads) }).map((k) => k * threads + t)), { maxLength: 16 }),
        )),
      }),
    )
    await fc.assert(
      fc.asyncProperty(plan, async ({ npages, perThread }) => {
        const bitmap = await kvm.createUserfaultBitmap(npages)
        try {
          await bitmap.fill(false)
          await Promise.all(perThread.map(async (ops) => {
            for (const [set, n] of ops) await (set ? bitmap.set(n) : bitmap.clear(n))
          }))
          // Each bit is written by one thread only, so its last operation decides it.
          const model = new Set<number>()
          for (const ops of perThread) for (const [set, n] of ops) set ? model.add(n) : model.delete(n)
          expect([...await bitmap.words()], 'the words after every thread finished').toEqual(kernelWords(npages, model))
        } finally {
          await bitmap.close()
        }
      }),
      { numRuns: 40 },
    )
  })

  test('fill(true) sets exactly npages bits, fill(false) clears them', async ({ kvm }) => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 300 }), async (npages) => {
        const bitmap = await kvm.createUserfaultBitmap(npages)
        try {
          await bitmap.fill(true)
          const all = new Set(Array.from({ length: npages }, (_, n) => n))
          const words = [...await bitmap.words()]
          // Bits past npages in the last word are not KVM's to read; only the first npages must be set.
          const mask = kernelWords(npages, all)
          expect(words.map((w, i) => w & mask[i]!), `fill(true) of ${npages} pages`).toEqual(mask)
          expect(await bitmap.test(npages - 1), `test(${npages - 1})`).toBe(true)
          await bitmap.fill(false)
          expect([...await bitmap.words()], `fill(false) of ${npages} pages`).toEqual(kernelWords(npages, new Set()))
        } finally {
          await bitmap.close()
        }
      }),
      { numRuns: 20 },
    )
  })
})
