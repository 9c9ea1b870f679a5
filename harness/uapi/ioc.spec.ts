// ioc.ts: the asm-generic _IOC encoding, on known numbers, by property, and on fields that do not fit.

import { describe, test, expect } from 'vitest'
import fc from 'fast-check'
import {
  _IO, _IOC, _IOC_DIR, _IOC_NR, _IOC_READ, _IOC_SIZE, _IOC_TYPE, _IOC_WRITE, _IOR, _IOW, _IOWR,
} from './ioc.ts'

describe('ioc', () => {
  test('field positions: nr 0-7, type 8-15, size 16-29, dir 30-31 (WRITE=1, READ=2)', () => {
    expect(_IOC(0, 0, 0x01, 0)).toBe(0x0000_0001)
    expect(_IOC(0, 0x01, 0, 0)).toBe(0x0000_0100)
    expect(_IOC(0, 0, 0, 0x01)).toBe(0x0001_0000)
    expect(_IOC(0, 0, 0, 0x3fff)).toBe(0x3fff_0000)
    expect(_IOC(_IOC_WRITE, 0, 0, 0)).toBe(0x4000_0000)
    expect(_IOC(_IOC_READ, 0, 0, 0)).toBe(0x8000_0000)
    expect(_IOC(_IOC_READ | _IOC_WRITE, 0, 0, 0)).toBe(0xc000_0000)
  })

  test('the four macros, on known KVM numbers', () => {
    expect(_IO(0xae, 0x01)).toBe(0xae01)
    expect(_IOR(0xae, 0x81, 144)).toBe(0x8090ae81)
    expect(_IOW(0xae, 0x49, 160)).toBe(0x40a0ae49)
    expect(_IOWR(0xae, 0xd4, 64)).toBe(0xc040aed4)
  })

  test('results are unsigned 32-bit (never negative, as `<<` would make them)', () => {
    expect(_IOWR(0xff, 0xff, 0x3fff)).toBe(0xffff_ffff)
    expect(_IOR(0xaa, 0x01, 16)).toBeGreaterThan(0)
  })

  test('property: _IOC_DIR/_IOC_TYPE/_IOC_NR/_IOC_SIZE take _IOC apart', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 0xff }),
        fc.integer({ min: 0, max: 0xff }), fc.integer({ min: 0, max: 0x3fff }),
        (dir, type, nr, size) => {
          const cmd = _IOC(dir, type, nr, size)
          expect(cmd).toBeGreaterThanOrEqual(0)
          expect(cmd).toBeLessThanOrEqual(0xffff_ffff)
          expect([_IOC_DIR(cmd), _IOC_TYPE(cmd), _IOC_NR(cmd), _IOC_SIZE(cmd)]).toEqual([dir, type, nr, size])
        },
      ),
    )
  })

  test('fields that do not fit are a RangeError naming the field', () => {
    expect(() => _IOW(0xae, 0x49, 0x4000)).toThrow(new RangeError('_IOC size 16384 does not fit 14 bits'))
    expect(() => _IO(0xae, 0x100)).toThrow(/_IOC nr 256/)
    expect(() => _IO(-1, 0)).toThrow(/_IOC type -1/)
    expect(() => _IOC(4, 0, 0, 0)).toThrow(/_IOC dir 4/)
    expect(() => _IOR(0xae, 1.5, 8)).toThrow(RangeError)
  })

  test('the decoders refuse what is not an unsigned 32-bit number', () => {
    expect(() => _IOC_NR(-1)).toThrow(RangeError)
    expect(() => _IOC_SIZE(2 ** 32)).toThrow(RangeError)
    expect(() => _IOC_TYPE(0.5)).toThrow(RangeError)
  })
})
