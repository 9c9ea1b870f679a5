// Memory attributes (virt/kvm/kvm_main.c, CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES): KVM_SET_MEMORY_ATTRIBUTES
// and the per-gfn attributes it records. The kernel keeps them in an xarray; here they are sorted,
// disjoint gfn ranges with the same value, because one call can cover 2^52 gfns.

import { KVM_MEMORY_ATTRIBUTE_PRIVATE } from '../../harness/uapi/kvm.ts'
import type { ErrnoName } from '../../harness/uapi/errno.ts'
import { PAGE_SHIFT, isPageAligned } from './page-store.ts'
import type { KernelProfile } from './profiles.ts'
import { U64_MAX } from './u64.ts'
import { supportedMemAttributes } from './vm-types.ts'

/** struct kvm_memory_attributes, normalised. */
export interface MemoryAttributesRequest {
  address: bigint
  size: bigint
  attributes: bigint
  flags: bigint
}

/**
 * kvm_vm_ioctl_set_mem_attributes(): the checks in order. Returns the gfn range [start, end) to set, or
 * the errno. Without generic memory attributes the ioctl does not exist (kvm_vm_ioctl() -> ENOTTY,
 * measured on the project's PVM host).
 */
export function checkSetMemoryAttributes(
  profile: KernelProfile,
  vmType: number,
  a: MemoryAttributesRequest,
): { start: number; end: number } | ErrnoName {
  if (!profile.memoryAttributes) return 'ENOTTY'
  // flags != 0 -> EINVAL
  if (a.flags !== 0n) return 'EINVAL'
  // attributes & ~kvm_supported_mem_attributes(kvm) -> EINVAL (the default VM supports none)
  if ((a.attributes & ~supportedMemAttributes(profile, vmType)) !== 0n) return 'EINVAL'
  // size == 0 or address + size wraps -> EINVAL
  if (a.size === 0n || a.address + a.size > U64_MAX) return 'EINVAL'
  // address or size not page aligned -> EINVAL
  if (!isPageAligned(a.address) || !isPageAligned(a.size)) return 'EINVAL'
  const shift = BigInt(PAGE_SHIFT)
  return { start: Number(a.address >> shift), end: Number((a.address + a.size) >> shift) }
}

interface AttributeRange {
  start: number
  end: number
  value: bigint
}

/** kvm->mem_attr_array: the attributes of every gfn, 0 where none were set. */
export class MemoryAttributeMap {
  /** Sorted, disjoint, non-adjacent-with-equal-value ranges of non-zero attributes. */
  private ranges: AttributeRange[] = []

  /** kvm_vm_set_mem_attributes(): [start, end) takes `value` (0 clears). */
  set(start: number, end: number, value: bigint): void {
    if (start >= end) return
    const kept: AttributeRange[] = []
    for (const r of this.ranges) {
      if (r.end <= start || r.start >= end) {
        kept.push(r)
        continue
      }
      if (r.start < start) kept.push({ start: r.start, end: start, value: r.value })
      if (r.end > end) kept.push({ start: end, end: r.end, value: r.value })
    }
    if (value !== 0n) kept.push({ start, end, value })
    kept.sort((x, y) => x.start - y.start)
    this.ranges = []
    for (const r of kept) {
      const last = this.ranges[this.ranges.length - 1]
      if (last !== undefined && last.end === r.start && last.value === r.value) last.end = r.end
      else this.ranges.push({ ...r })
    }
  }

  /** kvm_get_memory_attributes() */
  get(gfn: number): bigint {
    let lo = 0
    let hi = this.ranges.length - 1
    while (lo <= hi) {
      const mid = (lo + hi) >> 1
      const r = this.ranges[mid]!
      if (gfn < r.start) hi = mid - 1
      else if (gfn >= r.end) lo = mid + 1
      else return r.value
    }
    return 0n
  }

  /** kvm_mem_is_private(): whether `gfn` has the PRIVATE attribute. */
  isPrivate(gfn: number): boolean {
    return (this.get(gfn) & KVM_MEMORY_ATTRIBUTE_PRIVATE) !== 0n
  }

  /** kvm_range_has_memory_attributes(): every gfn of [start, end) has `attrs` under `mask`. */
  rangeHas(start: number, end: number, mask: bigint, attrs: bigint): boolean {
    // Gaps between ranges hold 0, which matches only when `attrs` is 0.
    let at = start
    for (const r of this.ranges) {
      if (r.end <= at) continue
      if (r.start >= end) break
      if (r.start > at && attrs !== 0n) return false
      if ((r.value & mask) !== attrs) return false
      at = r.end
      if (at >= end) return true
    }
    return at >= end || attrs === 0n
  }

  /** The recorded ranges (for tests and debugging). */
  entries(): ReadonlyArray<Readonly<AttributeRange>> {
    return this.ranges
  }
}
