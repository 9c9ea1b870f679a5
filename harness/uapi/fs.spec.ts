// Pins fs.ts with literal x86-64 values (octal in the C headers for O_*, hex here, so a slip between the
// two shows up), and that each flag family is made of distinct bits.

import { describe, test, expect } from 'vitest'
import * as fs from './fs.ts'

function family(prefix: string, except: string[] = []): number[] {
  return Object.entries(fs)
    .filter(([name]) => name.startsWith(prefix) && !except.includes(name))
    .map(([, v]) => v as number)
}

describe('fs.ts', () => {
  test('fallocate modes', () => {
    expect([fs.FALLOC_FL_ALLOCATE_RANGE, fs.FALLOC_FL_KEEP_SIZE, fs.FALLOC_FL_PUNCH_HOLE, fs.FALLOC_FL_NO_HIDE_STALE,
      fs.FALLOC_FL_COLLAPSE_RANGE, fs.FALLOC_FL_ZERO_RANGE, fs.FALLOC_FL_INSERT_RANGE, fs.FALLOC_FL_UNSHARE_RANGE,
      fs.FALLOC_FL_WRITE_ZEROES]).toEqual([0, 1, 2, 4, 8, 0x10, 0x20, 0x40, 0x80])
  })

  test('mmap', () => {
    expect([fs.PROT_NONE, fs.PROT_READ, fs.PROT_WRITE, fs.PROT_EXEC]).toEqual([0, 1, 2, 4])
    expect({
      SHARED: fs.MAP_SHARED, PRIVATE: fs.MAP_PRIVATE, SHARED_VALIDATE: fs.MAP_SHARED_VALIDATE, FIXED: fs.MAP_FIXED,
      ANONYMOUS: fs.MAP_ANONYMOUS, NORESERVE: fs.MAP_NORESERVE, POPULATE: fs.MAP_POPULATE, HUGETLB: fs.MAP_HUGETLB,
      FIXED_NOREPLACE: fs.MAP_FIXED_NOREPLACE,
    }).toEqual({
      SHARED: 1, PRIVATE: 2, SHARED_VALIDATE: 3, FIXED: 0x10, ANONYMOUS: 0x20, NORESERVE: 0x4000, POPULATE: 0x8000,
      HUGETLB: 0x40000, FIXED_NOREPLACE: 0x100000,
    })
    expect([fs.MAP_HUGE_2MB, fs.MAP_HUGE_1GB]).toEqual([0x5400_0000, 0x7800_0000])
  })

  test('madvise', () => {
    expect([fs.MADV_NORMAL, fs.MADV_DONTNEED, fs.MADV_REMOVE, fs.MADV_HUGEPAGE, fs.MADV_NOHUGEPAGE,
      fs.MADV_POPULATE_READ, fs.MADV_POPULATE_WRITE, fs.MADV_COLLAPSE]).toEqual([0, 4, 9, 14, 15, 22, 23, 25])
  })

  test('memfd_create and open flags', () => {
    expect([fs.MFD_CLOEXEC, fs.MFD_ALLOW_SEALING, fs.MFD_HUGETLB, fs.MFD_NOEXEC_SEAL, fs.MFD_EXEC]).toEqual([1, 2, 4, 8, 0x10])
    expect([fs.O_RDONLY, fs.O_WRONLY, fs.O_RDWR, fs.O_NONBLOCK, fs.O_CLOEXEC]).toEqual([0, 1, 2, 0x800, 0x80000])
  })

  test('each bit-flag family is made of distinct single bits', () => {
    for (const flags of [
      family('FALLOC_FL_', ['FALLOC_FL_ALLOCATE_RANGE']),
      family('PROT_', ['PROT_NONE']),
      family('MAP_', ['MAP_SHARED_VALIDATE', 'MAP_HUGE_SHIFT', 'MAP_HUGE_MASK', 'MAP_HUGE_2MB', 'MAP_HUGE_1GB']),
      family('MFD_'),
    ]) {
      for (const f of flags) expect(f & (f - 1)).toBe(0)
      expect(new Set(flags).size).toBe(flags.length)
    }
    expect(fs.MAP_HUGE_2MB >>> fs.MAP_HUGE_SHIFT & fs.MAP_HUGE_MASK).toBe(21)
  })
})
