// A vitest reporter for `npm test`: after the run, list every skipped test with its reason, grouped
// by project, so a skip in CI is read as a fact about the machine and never mistaken for a pass.

import type { Reporter, TestModule } from 'vitest/node'

export default class SkipReasonsReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    const byProject = new Map<string, Map<string, string[]>>()
    for (const mod of testModules) {
      for (const test of mod.children.allTests()) {
        const result = test.result()
        if (result.state !== 'skipped') continue
        const reason = result.note ?? 'no reason given'
        const project = test.project.name || 'default'
        const reasons = byProject.get(project) ?? new Map<string, string[]>()
        byProject.set(project, reasons)
        const names = reasons.get(reason) ?? []
        names.push(test.fullName)
        reasons.set(reason, names)
      }
    }
    if (byProject.size === 0) return
    const lines = ['', 'Skipped tests and why:']
    for (const [project, reasons] of byProject) {
      for (const [reason, names] of reasons) {
        lines.push(`  [${project}] ${names.length} skipped: ${reason}`)
        for (const name of names.slice(0, 3)) lines.push(`      ${name}`)
        if (names.length > 3) lines.push(`      … and ${names.length - 3} more`)
      }
    }
    process.stdout.write(lines.join('\n') + '\n')
  }
}
