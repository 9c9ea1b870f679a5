// The JSON result of `kvmconf run --reporter json --output FILE`: the RunResult as it is, one record
// per test ({id, suite, status, reason?, durationMs}) and the runInfo.

import { writeFile } from 'node:fs/promises'
import type { RunResult } from '../results.ts'

export function renderJson(result: RunResult): string {
  return JSON.stringify(result, null, 2) + '\n'
}

export async function writeJson(result: RunResult, file: string): Promise<void> {
  await writeFile(file, renderJson(result))
}
