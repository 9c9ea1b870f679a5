// File and memory constants the memory tests pass to the host, x86-64 values (arm64 shares all of them):
// include/uapi/linux/falloc.h (FALLOC_FL_*), include/uapi/asm-generic/mman-common.h and mman.h
// (PROT_*, MAP_*, MADV_*), include/uapi/asm-generic/hugetlb_encode.h (MAP_HUGE_*), include/uapi/linux/memfd.h
// (MFD_*) and include/uapi/asm-generic/fcntl.h (O_*). Only what guest_memfd, memslot backings and
// userfaultfd tests use; the upstream selftests pass the same values through libc.

// ---- fallocate(2) modes ----------------------------------------------------------------------------
/** Mode 0: allocate the range and extend the file (the name is recent; the value is not). */
export const FALLOC_FL_ALLOCATE_RANGE = 0x00
export const FALLOC_FL_KEEP_SIZE = 0x01
/** Only with KEEP_SIZE (vfs_fallocate()); guest_memfd takes KEEP_SIZE with or without it, nothing else. */
export const FALLOC_FL_PUNCH_HOLE = 0x02
export const FALLOC_FL_NO_HIDE_STALE = 0x04
export const FALLOC_FL_COLLAPSE_RANGE = 0x08
export const FALLOC_FL_ZERO_RANGE = 0x10
export const FALLOC_FL_INSERT_RANGE = 0x20
export const FALLOC_FL_UNSHARE_RANGE = 0x40
/** 6.17 and later. */
export const FALLOC_FL_WRITE_ZEROES = 0x80

// ---- mmap(2) protection ----------------------------------------------------------------------------
export const PROT_NONE = 0x0
export const PROT_READ = 0x1
export const PROT_WRITE = 0x2
export const PROT_EXEC = 0x4

// ---- mmap(2) flags ---------------------------------------------------------------------------------
export const MAP_SHARED = 0x01
export const MAP_PRIVATE = 0x02
export const MAP_SHARED_VALIDATE = 0x03
export const MAP_FIXED = 0x10
export const MAP_ANONYMOUS = 0x20
export const MAP_NORESERVE = 0x4000
export const MAP_POPULATE = 0x8000
export const MAP_HUGETLB = 0x40000
export const MAP_FIXED_NOREPLACE = 0x100000

/** Huge page size for MAP_HUGETLB / MFD_HUGETLB: log2(size) in bits 26..31. */
export const MAP_HUGE_SHIFT = 26
export const MAP_HUGE_MASK = 0x3f
export const MAP_HUGE_2MB = 21 << MAP_HUGE_SHIFT
export const MAP_HUGE_1GB = 30 << MAP_HUGE_SHIFT

// ---- madvise(2) ------------------------------------------------------------------------------------
export const MADV_NORMAL = 0
export const MADV_DONTNEED = 4
export const MADV_REMOVE = 9
export const MADV_HUGEPAGE = 14
export const MADV_NOHUGEPAGE = 15
export const MADV_POPULATE_READ = 22
export const MADV_POPULATE_WRITE = 23
/** Synchronous THP collapse; guest_memfd_test's test_collapse expects EINVAL on a guest_memfd mapping. */
export const MADV_COLLAPSE = 25

// ---- memfd_create(2) -------------------------------------------------------------------------------
export const MFD_CLOEXEC = 0x0001
export const MFD_ALLOW_SEALING = 0x0002
export const MFD_HUGETLB = 0x0004
export const MFD_NOEXEC_SEAL = 0x0008
export const MFD_EXEC = 0x0010

// ---- open(2) / userfaultfd(2) flags (generic fcntl.h octal values) ----------------------------------
export const O_RDONLY = 0o0
export const O_WRONLY = 0o1
export const O_RDWR = 0o2
export const O_NONBLOCK = 0o4000
export const O_CLOEXEC = 0o2000000
