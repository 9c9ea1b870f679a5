// Ground truth for the emulator's userfaultfd: the sequences of userfaultfd-scenarios.ts (the ioctls'
// rules, host page presence, vCPUs blocked on faults and how they are released) must end the same way on
// the emulator with the `pvm-6.18` profile as on this project's kernel.
//
// The kernel's lines are kept in userfaultfd.measured.json (measured through the native backend on
// 6.18.44-fc-v657), so the emulator is held to them on every machine; where the native backend is
// available the kernel is asked again and must still give them. To re-measure after a kernel change:
// run the scenarios on the native backend (runScenario()) and replace the file, with the reason.

import { readFileSync } from 'node:fs'
import { describe, expect, test } from 'vitest'
import { loadBackend } from '../index.ts'
import { runScenario, SCENARIOS } from './userfaultfd-scenarios.ts'

const measured = JSON.parse(readFileSync(new URL('./userfaultfd.measured.json', import.meta.url), 'utf8')) as {
  kernel: string
  scenarios: Record<string, string[]>
}
const native = await loadBackend('native')
const emulator = await loadBackend('emulator', { profile: 'pvm-6.18' })

describe(`userfaultfd: emulator (pvm-6.18) vs the kernel (${measured.kernel})`, () => {
  test('every scenario has measured lines', () => {
    expect(Object.keys(measured.scenarios).sort()).toEqual(Object.keys(SCENARIOS).sort())
  })

  for (const name of Object.keys(SCENARIOS)) {
    const want = measured.scenarios[name] ?? []
    test(`emulator: ${name}`, async (ctx) => {
      if (!emulator.available) return ctx.skip(`the emulator is not available: ${emulator.reason}`)
      expect(await runScenario(emulator.backend, name), 'the emulator against the measured kernel').toEqual(want)
    })
    test(`kernel: ${name}`, async (ctx) => {
      if (!native.available) return ctx.skip(`the native backend is not available: ${native.reason}`)
      expect(await runScenario(native.backend, name), 'the kernel now against its measured lines').toEqual(want)
    })
  }
})
