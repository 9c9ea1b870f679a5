// Replays every file of fixtures/fuzz-corpus (written by `kvmconf fuzz` on a failure, or kept from a
// passing run as a regression example): its seed, and its path where it has one, through the same
// commands and model as the fuzzer. A file with a path replays one shrunk failure and is only meaningful
// on the backend (and profile) that recorded it, since the commands offered depend on the backend; a
// file without one replays all its runs anywhere. A file replays through the command set it was recorded
// with ('v1' where it names none).

import { readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { ReplayFile } from '../../harness/cli/fuzz.ts'
import { requireThat } from '../../harness/gating.ts'
import { describe, expect, test } from '../../harness/test.ts'
import { runFuzz } from './run.ts'

const CORPUS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../fixtures/fuzz-corpus')
const files = readdirSync(CORPUS).filter((f) => f.endsWith('.json')).sort()

describe('fuzz corpus', () => {
  test('the corpus is not empty', async () => {
    expect(files.length, `replay files in ${CORPUS}`).toBeGreaterThan(0)
  })

  for (const file of files) {
    test(`replay ${file}`, async ({ kvm, skip }) => {
      const replay = JSON.parse(readFileSync(path.join(CORPUS, file), 'utf8')) as ReplayFile
      expect(replay.kind, file).toBe('kvmconf-fuzz-replay')
      if (replay.path !== undefined) {
        const info = await kvm.info()
        requireThat({ skip }, kvm.name === replay.backend && (replay.profile === null || replay.profile === info.profile),
          `${file} replays a failure recorded on ${replay.backend}${replay.profile ? ` (${replay.profile})` : ''}`)
      }
      const r = await runFuzz(kvm, {
        seed: replay.seed, numRuns: replay.runs, maxCommands: replay.maxCommands, commandSet: replay.commandSet ?? 'v1',
        ...(replay.path !== undefined ? { path: replay.path, replayPath: replay.replayPath } : {}),
      })
      if (r.failure !== null) {
        expect.fail(`${file}: ${r.failure.error}\n${r.failure.commands.map((c) => `  ${c}`).join('\n')}\n` +
          `{ seed: ${r.seed}, path: "${r.failure.path}" }`)
      }
      if (replay.path === undefined) expect(r.runs, `${file}: runs replayed`).toBe(replay.runs)
      expect(r.commands, `${file}: commands replayed`).toBeGreaterThanOrEqual(replay.commands.length)
    })
  }
})
