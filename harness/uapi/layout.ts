// Struct layouts as data: the machinery under the kernel struct tables in this directory
// (memory-region.ts, kvm-run.ts, userfaultfd.ts, ...).
//
// A layout is an offset table, one line per member of the C struct, so that a reader can check it
// against the kernel header line by line: `guestPhysAddr: { offset: 8, type: 'u64' }`. One encoder and
// one decoder walk any table. Everything is little-endian, as on x86-64 and arm64.
//
// Values follow harness/backend.ts: a u64 goes in as a number or a bigint and comes out as a bigint,
// narrower integers are numbers, `__u8 x[n]` arrays are Uint8Arrays. Encoding checks every value and
// throws a RangeError naming `struct.field` for anything the C type cannot hold (negative, too wide, not
// an integer), because a silently truncated field would test something other than what the test says.
// Numbers above 2^53 - 1 are refused too: they may already have lost bits, so such values must be bigints.

export type ScalarType = 'u8' | 'u16' | 'u32' | 'u64'

export interface FieldSpec {
  /** Byte offset from the start of the struct (offsetof). */
  readonly offset: number
  readonly type: ScalarType
  /** Element count for an array member (`__u64 pad2[13]`); absent for a scalar. */
  readonly count?: number
}

export type Fields = Readonly<Record<string, FieldSpec>>

export interface StructLayout<F extends Fields = Fields> {
  /** The kernel's name for the struct (or `struct.member` for a view of one union member). */
  readonly name: string
  /** sizeof the struct: the bytes an encoder produces and a decoder needs. */
  readonly size: number
  readonly fields: F
}

export const SCALAR_SIZE: Readonly<Record<ScalarType, number>> = { u8: 1, u16: 2, u32: 4, u64: 8 }

const U64_MAX = (1n << 64n) - 1n

type ScalarOut<T extends ScalarType> = T extends 'u64' ? bigint : number
type ScalarIn<T extends ScalarType> = T extends 'u64' ? bigint | number : number

/** A decoded member. */
export type FieldValue<F extends FieldSpec> = F extends { readonly count: number }
  ? F['type'] extends 'u8' ? Uint8Array : ScalarOut<F['type']>[]
  : ScalarOut<F['type']>

/** What the encoder accepts for a member. */
export type FieldInput<F extends FieldSpec> = F extends { readonly count: number }
  ? F['type'] extends 'u8' ? Uint8Array | readonly number[] : readonly ScalarIn<F['type']>[]
  : ScalarIn<F['type']>

/** A decoded struct: every member present. */
export type StructValue<L extends StructLayout> = {
  -readonly [K in keyof L['fields']]: FieldValue<L['fields'][K]>
}

/** An encoder's input: absent members (and absent array tails) are zero, as in a `= {}` C initialiser. */
export type StructInput<L extends StructLayout> = {
  [K in keyof L['fields']]?: FieldInput<L['fields'][K]>
}

/**
 * Declares a layout and checks the table itself: every member lies inside the struct, is naturally
 * aligned (true of every UAPI struct here) and overlaps no other member. A typo in a table fails at
 * import, not in a test that happens to use the field.
 */
export function defineLayout<const F extends Fields>(name: string, size: number, fields: F): StructLayout<F> {
  const spans: [string, number, number][] = []
  for (const [key, f] of Object.entries(fields)) {
    const width = SCALAR_SIZE[f.type]
    const count = f.count ?? 1
    const end = f.offset + width * count
    if (!Number.isInteger(f.offset) || f.offset < 0 || !Number.isInteger(count) || count < 1 || end > size) {
      throw new Error(`layout ${name}.${key}: bytes ${f.offset}..${end} do not fit in ${size}`)
    }
    if (f.offset % width !== 0) throw new Error(`layout ${name}.${key}: offset ${f.offset} is not ${width}-aligned`)
    for (const [other, start, stop] of spans) {
      if (f.offset < stop && start < end) throw new Error(`layout ${name}.${key} overlaps ${name}.${other}`)
    }
    spans.push([key, f.offset, end])
  }
  return { name, size, fields }
}

/** Byte ranges [start, end) that no member covers: implicit padding, or union bytes a view leaves out. */
export function holes(layout: StructLayout): [number, number][] {
  const covered = new Uint8Array(layout.size)
  for (const f of Object.values(layout.fields)) {
    covered.fill(1, f.offset, f.offset + SCALAR_SIZE[f.type] * (f.count ?? 1))
  }
  const out: [number, number][] = []
  for (let i = 0; i < layout.size; i++) {
    if (covered[i]) continue
    const start = i
    while (i < layout.size && !covered[i]) i++
    out.push([start, i])
  }
  return out
}

function checkScalar(type: ScalarType, v: unknown, where: string): number | bigint {
  if (type === 'u64') {
    if (typeof v === 'bigint') {
      if (v < 0n || v > U64_MAX) throw new RangeError(`${where}: ${v} is out of range for a u64 (0..2^64-1)`)
      return v
    }
    if (typeof v !== 'number') throw new TypeError(`${where}: expected a number or bigint, got ${typeof v}`)
    if (!Number.isInteger(v)) throw new RangeError(`${where}: ${v} is not an integer`)
    if (v < 0) throw new RangeError(`${where}: ${v} is out of range for a u64 (0..2^64-1)`)
    if (!Number.isSafeInteger(v)) throw new RangeError(`${where}: ${v} is above 2^53-1; pass a bigint`)
    return BigInt(v)
  }
  if (typeof v !== 'number') throw new TypeError(`${where}: expected a number, got ${typeof v}`)
  if (!Number.isInteger(v)) throw new RangeError(`${where}: ${v} is not an integer`)
  const max = 2 ** (8 * SCALAR_SIZE[type]) - 1
  if (v < 0 || v > max) throw new RangeError(`${where}: ${v} is out of range for a ${type} (0..${max})`)
  return v
}

function put(view: DataView, offset: number, type: ScalarType, v: number | bigint): void {
  switch (type) {
    case 'u8': view.setUint8(offset, v as number); break
    case 'u16': view.setUint16(offset, v as number, true); break
    case 'u32': view.setUint32(offset, v as number, true); break
    case 'u64': view.setBigUint64(offset, v as bigint, true); break
  }
}

function get(view: DataView, offset: number, type: ScalarType): number | bigint {
  switch (type) {
    case 'u8': return view.getUint8(offset)
    case 'u16': return view.getUint16(offset, true)
    case 'u32': return view.getUint32(offset, true)
    case 'u64': return view.getBigUint64(offset, true)
  }
}

function viewOf(layout: StructLayout, bytes: Uint8Array, offset: number): DataView {
  if (!Number.isInteger(offset) || offset < 0 || offset + layout.size > bytes.length) {
    throw new RangeError(`${layout.name}: needs ${layout.size} bytes at offset ${offset}, the buffer has ${bytes.length}`)
  }
  return new DataView(bytes.buffer, bytes.byteOffset + offset, layout.size)
}

/**
 * Writes the members present in `value` into `bytes` at `offset`, leaving every other byte alone (so a
 * test can change one member of a struct it decoded). Checks everything before writing anything.
 */
export function writeStruct<L extends StructLayout>(layout: L, value: StructInput<L>, bytes: Uint8Array, offset = 0): void {
  const view = viewOf(layout, bytes, offset)
  const writes: [number, ScalarType, number | bigint][] = []
  for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
    if (v === undefined) continue
    const f = (layout.fields as Fields)[key]
    if (f === undefined) throw new TypeError(`${layout.name} has no member ${key}`)
    const where = `${layout.name}.${key}`
    if (f.count === undefined) {
      writes.push([f.offset, f.type, checkScalar(f.type, v, where)])
      continue
    }
    if (!(v instanceof Uint8Array) && !Array.isArray(v)) throw new TypeError(`${where}: expected an array`)
    const items = v as ArrayLike<unknown>
    if (items.length > f.count) {
      throw new RangeError(`${where}: ${items.length} elements do not fit in ${f.count}`)
    }
    const width = SCALAR_SIZE[f.type]
    for (let i = 0; i < f.count; i++) {
      const item = i < items.length ? checkScalar(f.type, items[i], `${where}[${i}]`) : f.type === 'u64' ? 0n : 0
      writes.push([f.offset + i * width, f.type, item])
    }
  }
  for (const [at, type, v] of writes) put(view, at, type, v)
}

/** A fresh `layout.size`-byte struct: the members in `value`, zeros everywhere else. */
export function encodeStruct<L extends StructLayout>(layout: L, value: StructInput<L>): Uint8Array {
  const bytes = new Uint8Array(layout.size)
  writeStruct(layout, value, bytes)
  return bytes
}

/** Reads every member of the struct at `offset` in `bytes`. Arrays are copies, not views. */
export function decodeStruct<L extends StructLayout>(layout: L, bytes: Uint8Array, offset = 0): StructValue<L> {
  const view = viewOf(layout, bytes, offset)
  const out: Record<string, unknown> = {}
  for (const [key, f] of Object.entries(layout.fields)) {
    if (f.count === undefined) {
      out[key] = get(view, f.offset, f.type)
    } else if (f.type === 'u8') {
      out[key] = bytes.slice(offset + f.offset, offset + f.offset + f.count)
    } else {
      const width = SCALAR_SIZE[f.type]
      out[key] = Array.from({ length: f.count }, (_, i) => get(view, f.offset + i * width, f.type))
    }
  }
  return out as StructValue<L>
}
