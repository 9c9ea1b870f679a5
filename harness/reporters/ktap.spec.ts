import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import { escapeKtap, resultLine, unescapeKtap } from './ktap.ts'
import { parseKtap } from './ktap-parser.ts'

describe('KTAP escaping', () => {
  test('escape then unescape is the identity, and an escaped name never holds a bare # or newline', () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom('a', ' ', '#', '\\', '\n', '\r', 'n', '>', 'é') }), (s) => {
        const e = escapeKtap(s)
        expect(unescapeKtap(e)).toBe(s)
        expect(e).not.toMatch(/(^|[^\\])(\\\\)*#/)
        expect(e).not.toMatch(/[\n\r]/)
      }),
    )
  })

  test('a result line with any name and reason parses back to them', () => {
    fc.assert(
      fc.property(fc.string(), fc.string({ minLength: 1 }), fc.boolean(), (name, reason, ok) => {
        const trimmed = name.trim() === name ? name : name.trim()
        const doc = parseKtap(`KTAP version 1\n1..1\n${resultLine(1, trimmed, { ok, directive: 'SKIP', data: reason })}\n`)
        expect(doc.tests[0]).toMatchObject({ ok, description: trimmed, directive: 'SKIP', data: reason })
      }),
    )
  })
})

describe('KTAP parser', () => {
  const ok = 'KTAP version 1\n1..2\n  KTAP version 1\n  1..2\n  ok 1 a\n  # why\n  not ok 2 b\nnot ok 1 suite\nok 2 other # SKIP no cap\n'

  test('reads nested blocks, directives and diagnostics', () => {
    const doc = parseKtap(ok)
    expect(doc.tests.map((t) => [t.description, t.ok, t.subtests.length])).toEqual([
      ['suite', false, 2],
      ['other', true, 0],
    ])
    expect(doc.tests[0]?.subtests[1]).toMatchObject({ description: 'b', ok: false, diagnostics: ['why'] })
    expect(doc.tests[1]).toMatchObject({ directive: 'SKIP', data: 'no cap' })
  })

  test.each([
    ['no version line', '1..1\nok 1 a\n', /expected "KTAP version 1"/],
    ['a missing result', 'KTAP version 1\n1..2\nok 1 a\n', /the plan says 2 tests, there are 1/],
    ['a wrong number', 'KTAP version 1\n1..2\nok 1 a\nok 3 b\n', /result number 3, expected 2/],
    ['a result before the plan', 'KTAP version 1\nok 1 a\n1..1\n', /a result before the plan/],
    ['a subtest without its parent', 'KTAP version 1\n1..1\n  KTAP version 1\n  1..1\n  ok 1 a\n', /without its parent result/],
    ['a stray indented line', 'KTAP version 1\n1..1\n   ok 1 a\nok 1 b\n', /unexpected indentation/],
    ['garbage', 'KTAP version 1\n1..1\nfine 1 a\n', /not a KTAP line/],
  ])('rejects %s', (_, text, error) => {
    expect(() => parseKtap(text)).toThrow(error)
  })
})
