// errno values by name (include/uapi/asm-generic/errno-base.h and errno.h; x86-64 and arm64 share them).
// Tests assert errno *names*; numbers appear only where a backend hands one over.

export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  ENOEXEC: 8,
  EBADF: 9,
  ECHILD: 10,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  ENFILE: 23,
  EMFILE: 24,
  ENOTTY: 25,
  EFBIG: 27,
  ENOSPC: 28,
  ESPIPE: 29,
  EROFS: 30,
  EPIPE: 32,
  ERANGE: 34,
  EDEADLK: 35,
  ENOSYS: 38,
  EOVERFLOW: 75,
  EOPNOTSUPP: 95,
  ETIMEDOUT: 110,
  EHWPOISON: 133,
} as const

export type ErrnoName = keyof typeof ERRNO

const byNumber = new Map<number, ErrnoName>(
  (Object.entries(ERRNO) as [ErrnoName, number][]).map(([name, n]) => [n, name]),
)

/** The name of an errno number; unknown numbers are spelled `E<n>` so they still print and compare. */
export function errnoName(n: number): ErrnoName | string {
  return byNumber.get(n) ?? `E${n}`
}

/** The number of an errno name; `E<n>` spellings round-trip. */
export function errnoNumber(name: string): number {
  const known = (ERRNO as Record<string, number>)[name]
  if (known !== undefined) return known
  const m = /^E(\d+)$/.exec(name)
  if (m) return Number(m[1])
  throw new RangeError(`unknown errno name ${name}`)
}
