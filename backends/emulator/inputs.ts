// The contract's argument objects turned into the kernel structs the rules read. Bad shapes (a
// fraction, a u64 out of range, too many pad words) are harness bugs and throw TypeError here.

import type { MemoryAttributes, U64In, UserspaceMemoryRegion, UserspaceMemoryRegion2 } from '../../harness/backend.ts'
import type { MemoryAttributesRequest } from './memory-attributes.ts'
import type { MemoryRegion } from './memslots.ts'
import { u32, u64 } from './u64.ts'

/** struct kvm_userspace_memory_region: the legacy ioctl copies 32 bytes; the rest of region2 reads 0. */
export function legacyRegion(region: UserspaceMemoryRegion): MemoryRegion {
  return {
    slot: u32(region.slot, 'slot'),
    flags: u32(region.flags, 'flags'),
    guestPhysAddr: u64(region.guestPhysAddr, 'guestPhysAddr'),
    memorySize: u64(region.memorySize, 'memorySize'),
    userspaceAddr: u64(region.userspaceAddr, 'userspaceAddr'),
    guestMemfdOffset: 0n,
    guestMemfd: 0,
    userfaultBitmap: 0n,
  }
}

/** struct kvm_userspace_memory_region2: every field; pad1 and pad2 are checked for shape only. */
export function region2(region: UserspaceMemoryRegion2): MemoryRegion {
  if (region.pad1 !== undefined) u32(region.pad1, 'pad1')
  const pad2 = region.pad2 ?? []
  if (pad2.length > 13) throw new TypeError(`pad2: ${pad2.length} words, the struct has 13`)
  pad2.forEach((word, i) => u64(word, `pad2[${i}]`))
  return {
    ...legacyRegion(region),
    guestMemfdOffset: u64(region.guestMemfdOffset ?? 0, 'guestMemfdOffset'),
    guestMemfd: u32(region.guestMemfd ?? 0, 'guestMemfd'),
    userfaultBitmap: u64(region.userfaultBitmap ?? 0, 'userfaultBitmap'),
  }
}

/** struct kvm_memory_attributes */
export function memoryAttributes(attrs: MemoryAttributes): MemoryAttributesRequest {
  return {
    address: u64(attrs.address, 'address'),
    size: u64(attrs.size, 'size'),
    attributes: u64(attrs.attributes, 'attributes'),
    flags: u64(attrs.flags ?? 0, 'flags'),
  }
}

/** A fixed-length array of u64 words (struct kvm_enable_cap's args[4], kvm_create_guest_memfd's reserved[6]). */
export function u64Words(words: readonly U64In[] | undefined, length: number, what: string): bigint[] {
  const given = words ?? []
  if (given.length > length) throw new TypeError(`${what}: ${given.length} words, the struct has ${length}`)
  const out = given.map((w, i) => u64(w, `${what}[${i}]`))
  while (out.length < length) out.push(0n)
  return out
}

/** A byte value for fill()/findMismatch(). */
export function byteValue(value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > 255) throw new TypeError(`byte: ${value} is not 0..255`)
  return value
}
