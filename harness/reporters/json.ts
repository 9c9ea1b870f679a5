// The JSON result of `kvmconf run --reporter json=FILE` (or `--reporter json --output FILE`): the
// RunResult as it is, `{ kind, runInfo, results, errors }`, one record per test. It is the canonical
// artifact: `kvmconf merge`, `compare`, `report` and `expectations update` all read it.

import type { RunResult } from '../results.ts'

export function renderJson(result: RunResult): string {
  return JSON.stringify({ kind: 'kvmconf-result', ...result }, null, 2) + '\n'
}

export class JsonReporter {
  static readonly description = 'the run result as JSON, for merge, compare, report and expectations update (needs =FILE or --output)'
  render(result: RunResult): string {
    return renderJson(result)
  }
}
