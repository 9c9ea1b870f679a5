// Pins userfaultfd.ts: ioctl numbers as literals and against _IOC from the struct sizes, bit indices,
// modes, events, features, and the uffd_msg layout (include/uapi/linux/userfaultfd.h).

import { describe, test, expect } from 'vitest'
import fc from 'fast-check'
import * as uffd from './userfaultfd.ts'
import {
  decodeUffdMsg, encodeUffdMsg, UFFD_EVENT_PAGEFAULT, UFFD_PAGEFAULT_FLAG_WRITE, UFFDIO, UFFDIO_STRUCT_SIZE, uffd_msg,
} from './userfaultfd.ts'
import { _IO, _IOC_NR, _IOC_TYPE, _IOR, _IOWR } from './ioc.ts'
import { holes, type StructLayout } from './layout.ts'
import { structArbitrary } from './layout-arbitrary.ts'

const S = UFFDIO_STRUCT_SIZE

// [name, computed from the header's definition, literal]
const IOCTLS: [keyof typeof uffd, number, number][] = [
  ['UFFDIO_API', _IOWR(UFFDIO, 0x3f, 24), 0xc018aa3f],
  ['UFFDIO_REGISTER', _IOWR(UFFDIO, 0x00, 32), 0xc020aa00],
  ['UFFDIO_UNREGISTER', _IOR(UFFDIO, 0x01, 16), 0x8010aa01],
  ['UFFDIO_WAKE', _IOR(UFFDIO, 0x02, 16), 0x8010aa02],
  ['UFFDIO_COPY', _IOWR(UFFDIO, 0x03, 40), 0xc028aa03],
  ['UFFDIO_ZEROPAGE', _IOWR(UFFDIO, 0x04, 32), 0xc020aa04],
  ['UFFDIO_MOVE', _IOWR(UFFDIO, 0x05, 40), 0xc028aa05],
  ['UFFDIO_WRITEPROTECT', _IOWR(UFFDIO, 0x06, 24), 0xc018aa06],
  ['UFFDIO_CONTINUE', _IOWR(UFFDIO, 0x07, 32), 0xc020aa07],
  ['UFFDIO_POISON', _IOWR(UFFDIO, 0x08, 32), 0xc020aa08],
  ['USERFAULTFD_IOC_NEW', _IO(0xaa, 0x00), 0xaa00],
]

describe('userfaultfd.ts', () => {
  test('magic numbers', () => {
    expect([uffd.UFFD_API, uffd.UFFDIO, uffd.USERFAULTFD_IOC, uffd.UFFD_USER_MODE_ONLY]).toEqual([0xaa, 0xaa, 0xaa, 1])
  })

  test('argument struct sizes', () => {
    expect(S).toEqual({
      uffdio_api: 24, uffdio_range: 16, uffdio_register: 32, uffdio_copy: 40, uffdio_zeropage: 32,
      uffdio_move: 40, uffdio_writeprotect: 24, uffdio_continue: 32, uffdio_poison: 32,
    })
  })

  test.each(IOCTLS)('%s = _IOC(...) = %#x', (name, computed, literal) => {
    expect(computed).toBe(literal)
    expect(uffd[name]).toBe(computed)
  })

  test('every UFFDIO ioctl number exported is pinned above', () => {
    const exported = Object.entries(uffd)
      .filter(([, v]) => typeof v === 'number' && v >= 0x100 && v <= 0xffff_ffff && _IOC_TYPE(v) === UFFDIO)
      .map(([name]) => name)
      .sort()
    expect(exported).toEqual(IOCTLS.map(([name]) => name).sort())
  })

  test('_UFFDIO_* bit indices are the ioctl nr values', () => {
    expect([uffd._UFFDIO_REGISTER, uffd._UFFDIO_UNREGISTER, uffd._UFFDIO_WAKE, uffd._UFFDIO_COPY,
      uffd._UFFDIO_ZEROPAGE, uffd._UFFDIO_MOVE, uffd._UFFDIO_WRITEPROTECT, uffd._UFFDIO_CONTINUE,
      uffd._UFFDIO_POISON, uffd._UFFDIO_API]).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 0x3f])
    expect(_IOC_NR(uffd.UFFDIO_CONTINUE)).toBe(uffd._UFFDIO_CONTINUE)
    expect(uffd.UFFD_API_IOCTLS).toBe(0x8000_0000_0000_0003n)
    expect(uffd.UFFD_API_RANGE_IOCTLS).toBe(0x1fcn)
    expect(uffd.UFFD_API_RANGE_IOCTLS_BASIC).toBe(0x1ccn)
  })

  test('modes', () => {
    expect([uffd.UFFDIO_REGISTER_MODE_MISSING, uffd.UFFDIO_REGISTER_MODE_WP, uffd.UFFDIO_REGISTER_MODE_MINOR]).toEqual([1, 2, 4])
    expect(uffd.UFFD_API_REGISTER_MODES).toBe(7)
    expect([uffd.UFFDIO_COPY_MODE_DONTWAKE, uffd.UFFDIO_COPY_MODE_WP]).toEqual([1, 2])
    expect([uffd.UFFDIO_CONTINUE_MODE_DONTWAKE, uffd.UFFDIO_CONTINUE_MODE_WP]).toEqual([1, 2])
    expect(uffd.UFFDIO_ZEROPAGE_MODE_DONTWAKE).toBe(1)
    expect([uffd.UFFDIO_WRITEPROTECT_MODE_WP, uffd.UFFDIO_WRITEPROTECT_MODE_DONTWAKE]).toEqual([1, 2])
    expect(uffd.UFFDIO_POISON_MODE_DONTWAKE).toBe(1)
    expect([uffd.UFFDIO_MOVE_MODE_DONTWAKE, uffd.UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES]).toEqual([1, 2])
  })

  test('events and page-fault flags', () => {
    expect([uffd.UFFD_EVENT_PAGEFAULT, uffd.UFFD_EVENT_FORK, uffd.UFFD_EVENT_REMAP, uffd.UFFD_EVENT_REMOVE,
      uffd.UFFD_EVENT_UNMAP]).toEqual([0x12, 0x13, 0x14, 0x15, 0x16])
    expect([uffd.UFFD_PAGEFAULT_FLAG_WRITE, uffd.UFFD_PAGEFAULT_FLAG_WP, uffd.UFFD_PAGEFAULT_FLAG_MINOR]).toEqual([1, 2, 4])
  })

  test('features: bits 0..16, each once, in the header\'s order', () => {
    const features = Object.entries(uffd).filter(([name]) => name.startsWith('UFFD_FEATURE_'))
    expect(Object.fromEntries(features)).toEqual({
      UFFD_FEATURE_PAGEFAULT_FLAG_WP: 1 << 0, UFFD_FEATURE_EVENT_FORK: 1 << 1, UFFD_FEATURE_EVENT_REMAP: 1 << 2,
      UFFD_FEATURE_EVENT_REMOVE: 1 << 3, UFFD_FEATURE_MISSING_HUGETLBFS: 1 << 4, UFFD_FEATURE_MISSING_SHMEM: 1 << 5,
      UFFD_FEATURE_EVENT_UNMAP: 1 << 6, UFFD_FEATURE_SIGBUS: 1 << 7, UFFD_FEATURE_THREAD_ID: 1 << 8,
      UFFD_FEATURE_MINOR_HUGETLBFS: 1 << 9, UFFD_FEATURE_MINOR_SHMEM: 1 << 10, UFFD_FEATURE_EXACT_ADDRESS: 1 << 11,
      UFFD_FEATURE_WP_HUGETLBFS_SHMEM: 1 << 12, UFFD_FEATURE_WP_UNPOPULATED: 1 << 13, UFFD_FEATURE_POISON: 1 << 14,
      UFFD_FEATURE_WP_ASYNC: 1 << 15, UFFD_FEATURE_MOVE: 1 << 16,
    })
  })
})

describe('struct uffd_msg', () => {
  test('32 bytes: event 0, pagefault.flags 8, pagefault.address 16, pagefault.feat.ptid 24', () => {
    expect(uffd_msg.size).toBe(32)
    const table = Object.fromEntries(Object.entries(uffd_msg.fields as StructLayout['fields']).map(([k, f]) => [k, [f.offset, f.type]]))
    expect(table).toEqual({
      event: [0, 'u8'], reserved1: [1, 'u8'], reserved2: [2, 'u16'], reserved3: [4, 'u32'],
      pagefaultFlags: [8, 'u64'], pagefaultAddress: [16, 'u64'], pagefaultPtid: [24, 'u32'],
    })
    // The rest of the union (remap.len, reserved.reserved3) is not part of the pagefault member.
    expect(holes(uffd_msg)).toEqual([[28, 32]])
  })

  test('a write fault written by hand decodes', () => {
    const bytes = new Uint8Array(64)
    const view = new DataView(bytes.buffer)
    view.setUint8(32, UFFD_EVENT_PAGEFAULT)
    view.setBigUint64(40, BigInt(UFFD_PAGEFAULT_FLAG_WRITE), true)
    view.setBigUint64(48, 0x7f12_3456_7000n, true)
    view.setUint32(56, 4242, true)
    expect(decodeUffdMsg(bytes, 32)).toEqual({
      event: 0x12, reserved1: 0, reserved2: 0, reserved3: 0, pagefaultFlags: 1n, pagefaultAddress: 0x7f12_3456_7000n,
      pagefaultPtid: 4242,
    })
  })

  test('property: decode(encode(x)) = x', () => {
    fc.assert(fc.property(structArbitrary(uffd_msg), (x) => {
      const bytes = encodeUffdMsg(x)
      expect(bytes).toHaveLength(32)
      expect(decodeUffdMsg(bytes)).toEqual(x)
    }))
  })

  test('encoding rejects out-of-range members, naming them', () => {
    expect(() => encodeUffdMsg({ event: 0x100 })).toThrow(/^uffd_msg\.event: 256 is out of range for a u8/)
    expect(() => encodeUffdMsg({ pagefaultAddress: 1n << 64n })).toThrow(RangeError)
    expect(() => encodeUffdMsg({ pagefaultAddress: -4096 })).toThrow(/^uffd_msg\.pagefaultAddress: /)
  })
})
