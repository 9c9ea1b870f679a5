// A strict KTAP version 1 parser, for the self-tests: it checks what Documentation/dev-tools/ktap.rst
// requires (a version line opening every level, a plan, results numbered from 1 in order and as many
// as the plan says, subtests indented by two more spaces, a parent's result after its subtests) and
// returns the tree. It is deliberately independent of ktap.ts except for unescaping.

import { unescapeKtap } from './ktap.ts'

export interface KtapNode {
  number: number
  ok: boolean
  description: string
  directive?: string
  data?: string
  /** The diagnostic lines ("# ...") just before this result, at its level. */
  diagnostics: string[]
  subtests: KtapNode[]
}

export interface KtapDocument {
  tests: KtapNode[]
  /** Diagnostic lines after the last result of the top level (kselftest's "# Totals:"). */
  trailer: string[]
}

const RESULT = /^(ok|not ok) (\d+)(?: ((?:[^#\\]|\\.)*?))?(?: # ?(.*))?$/

function splitDirective(rest: string): { directive?: string; data?: string } {
  const m = /^([A-Z]+)(?: (.*))?$/.exec(rest)
  if (m === null) return { data: unescapeKtap(rest) }
  return { directive: m[1], ...(m[2] !== undefined ? { data: unescapeKtap(m[2]) } : {}) }
}

export function parseKtap(text: string): KtapDocument {
  const lines = text.split('\n')
  if (lines.at(-1) === '') lines.pop()
  let i = 0
  const fail = (msg: string): never => {
    throw new Error(`KTAP line ${i + 1}: ${msg}: ${JSON.stringify(lines[i] ?? '<end>')}`)
  }

  // Parses one level at `indent`, starting at its version line; returns its results and the
  // diagnostics seen after the last one.
  const level = (indent: string): { tests: KtapNode[]; trailer: string[] } => {
    if (lines[i] !== `${indent}KTAP version 1`) fail(`expected "${indent}KTAP version 1"`)
    i++
    let plan: number | undefined
    const tests: KtapNode[] = []
    let diags: string[] = []
    let pendingSubtests: KtapNode[] | undefined
    while (i < lines.length) {
      const line = lines[i] as string
      if (line.startsWith(`${indent}  KTAP version 1`)) {
        if (pendingSubtests !== undefined) fail('a subtest block without its parent result')
        const sub = level(`${indent}  `)
        pendingSubtests = sub.tests
        diags.push(...sub.trailer)
        continue
      }
      if (!line.startsWith(indent)) break // the parent's next line
      const body = line.slice(indent.length)
      if (body.startsWith(' ')) fail('unexpected indentation')
      if (body.startsWith('#')) {
        diags.push(body.replace(/^# ?/, ''))
        i++
        continue
      }
      const planMatch = /^1\.\.(\d+)$/.exec(body)
      if (planMatch !== null) {
        if (plan !== undefined || tests.length > 0) fail('a plan after results or a second plan')
        plan = Number(planMatch[1])
        i++
        continue
      }
      const m = RESULT.exec(body)
      if (m === null) fail('not a KTAP line')
      const [, okWord, num, desc, rest] = m as RegExpExecArray
      if (plan === undefined) fail('a result before the plan')
      if (Number(num) !== tests.length + 1) fail(`result number ${num}, expected ${tests.length + 1}`)
      tests.push({
        number: Number(num),
        ok: okWord === 'ok',
        description: unescapeKtap((desc ?? '').trim()),
        ...(rest !== undefined ? splitDirective(rest) : {}),
        diagnostics: diags,
        subtests: pendingSubtests ?? [],
      })
      diags = []
      pendingSubtests = undefined
      i++
    }
    if (pendingSubtests !== undefined) fail('a subtest block without its parent result')
    if (plan === undefined) fail('no plan')
    if (tests.length !== plan) fail(`the plan says ${plan} tests, there are ${tests.length}`)
    return { tests, trailer: diags }
  }

  const doc = level('')
  if (i !== lines.length) fail('trailing lines')
  return doc
}
