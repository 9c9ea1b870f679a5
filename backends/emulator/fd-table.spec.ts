import { describe, expect, test } from 'vitest'
import { FdTable } from './fd-table.ts'

type File = { kind: string; name?: string }

describe('FdTable', () => {
  test('0, 1 and 2 are open stdio; the first file opened is 3', () => {
    const fds = new FdTable<File>({ kind: 'stdio' })
    expect(fds.openFds()).toEqual([0, 1, 2])
    expect(fds.get(0)).toEqual({ kind: 'stdio' })
    expect(fds.install({ kind: 'kvm' })).toBe(3)
  })

  test('a new file takes the lowest free number', () => {
    const fds = new FdTable<File>({ kind: 'stdio' })
    for (let i = 0; i < 6; i++) fds.install({ kind: 'f', name: `${i}` })
    expect(fds.openFds()).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8])
    fds.close(7)
    fds.close(4)
    fds.close(5)
    expect(fds.install({ kind: 'g' })).toBe(4)
    expect(fds.install({ kind: 'g' })).toBe(5)
    expect(fds.install({ kind: 'g' })).toBe(7)
    expect(fds.install({ kind: 'g' })).toBe(9)
  })

  test('a closed or never-opened fd is EBADF, and closing it again is too', () => {
    const fds = new FdTable<File>({ kind: 'stdio' })
    const fd = fds.install({ kind: 'vm' }) as number
    expect(fds.close(fd)).toEqual({ kind: 'vm' })
    expect(fds.get(fd)).toBe('EBADF')
    expect(fds.close(fd)).toBe('EBADF')
    expect(fds.get(99)).toBe('EBADF')
    expect(fds.get(-1)).toBe('EBADF')
    expect(fds.get(0xffffffff)).toBe('EBADF')
  })

  test('past RLIMIT_NOFILE installing is EMFILE', () => {
    const fds = new FdTable<File>({ kind: 'stdio' }, 4)
    expect(fds.install({ kind: 'a' })).toBe(3)
    expect(fds.install({ kind: 'b' })).toBe('EMFILE')
    fds.close(3)
    expect(fds.install({ kind: 'c' })).toBe(3)
  })

  test('stays fast with tens of thousands of fds', () => {
    const fds = new FdTable<File>({ kind: 'stdio' })
    const t0 = performance.now()
    for (let i = 0; i < 50_000; i++) fds.install({ kind: 'f' })
    for (let fd = 50_002; fd >= 3; fd -= 2) fds.close(fd)
    expect(fds.install({ kind: 'f' })).toBe(4)
    expect(performance.now() - t0).toBeLessThan(1000)
  })
})
