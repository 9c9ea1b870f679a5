import fc from 'fast-check'
import { expect, test } from 'vitest'
import { escapeXml, escapeXmlAttr, unescapeXml } from './junit.ts'

const xmlChar = fc.string({ unit: fc.constantFrom('a', '&', '<', '>', '"', "'", '\n', '\t', ';', '#', 'é', '\u{1F600}') })

test('XML escaping round-trips every character XML can hold, in text and in attributes', () => {
  fc.assert(
    fc.property(xmlChar, (s) => {
      expect(unescapeXml(escapeXml(s))).toBe(s)
      expect(unescapeXml(escapeXmlAttr(s))).toBe(s)
      expect(escapeXml(s)).not.toMatch(/[<>"]|&(?!(amp|lt|gt|quot|apos);)/)
      expect(escapeXmlAttr(s)).not.toMatch(/[\n\t]/)
    }),
  )
})

test('characters XML cannot hold at all become U+FFFD', () => {
  expect(escapeXml('a\u0000b\u001bc\ud800')).toBe('a\uFFFDb\uFFFDc\uFFFD')
})
