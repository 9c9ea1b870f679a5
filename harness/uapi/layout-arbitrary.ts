// fast-check arbitraries over any struct layout (layout.ts), for the round-trip properties of the
// *.spec.ts files in this directory: every member over its type's full range (u64 up to 2^64 - 1),
// arrays at their full length, so that decode(encode(x)) can be compared with x as it is.

import fc from 'fast-check'
import type { FieldSpec, ScalarType, StructLayout, StructValue } from './layout.ts'

export function scalarArbitrary(type: ScalarType): fc.Arbitrary<number | bigint> {
  switch (type) {
    case 'u8': return fc.integer({ min: 0, max: 0xff })
    case 'u16': return fc.integer({ min: 0, max: 0xffff })
    case 'u32': return fc.integer({ min: 0, max: 0xffff_ffff })
    case 'u64': return fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })
  }
}

function fieldArbitrary(f: FieldSpec): fc.Arbitrary<unknown> {
  if (f.count === undefined) return scalarArbitrary(f.type)
  if (f.type === 'u8') return fc.uint8Array({ minLength: f.count, maxLength: f.count })
  return fc.array(scalarArbitrary(f.type), { minLength: f.count, maxLength: f.count })
}

/** A fully populated value of the struct, as decodeStruct() returns one. */
export function structArbitrary<L extends StructLayout>(layout: L): fc.Arbitrary<StructValue<L>> {
  const members: Record<string, fc.Arbitrary<unknown>> = {}
  for (const [key, f] of Object.entries(layout.fields)) members[key] = fieldArbitrary(f)
  return fc.record(members) as unknown as fc.Arbitrary<StructValue<L>>
}
