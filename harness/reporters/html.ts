// A self-contained HTML page of a run (`kvmconf report RESULT.json --html out.html`): the verdict,
// counts per suite, every result that is not as expected with its details, kernel warnings, expected
// failures, skip reasons, every test, and the plots of any bench results given. No external resource:
// styles, the data and the plots are inline. The page reads fully without script; a small script adds
// a status filter to the table of tests and marks the page rendered (`<html data-rendered="yes">`).

import type { BenchResult } from '../bench/result.ts'
import { countBySuite, countStatuses, exitCodeFor, fullId, summaryLine, STATUSES, type RunResult, type TestRecord } from '../results.ts'
import { describeFailure, describeRun } from './details.ts'
import { escapeXml as esc } from './junit.ts'
import { plotBench } from './svg-plot.ts'

const STYLE = `
body { font-family: sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; } td, th { padding: 2px 8px; border: 1px solid #ddd; text-align: left; vertical-align: top; }
td.n { text-align: right; } pre { background: #f6f6f6; padding: 6px; white-space: pre-wrap; margin: 4px 0; }
.verdict { font-size: 1.2em; padding: 6px 10px; display: inline-block; }
.ok { background: #dfd; } .bad { background: #fdd; } .skip { background: #eee; }
.PASS { color: #070; } .FAIL, .TIMEOUT, .CRASH, .XPASS { color: #b00; font-weight: bold; } .SKIP { color: #666; }
.XFAIL { color: #a60; } .WARN { color: #c70; font-weight: bold; }
.failure { margin-bottom: 1em; } button { margin-right: 4px; }
`

const SCRIPT = `
(function () {
  var data = JSON.parse(document.getElementById('kvmconf-result').textContent);
  var counts = {};
  data.results.forEach(function (r) { counts[r.status] = (counts[r.status] || 0) + 1; });
  var summary = document.getElementById('js-summary');
  summary.textContent = Object.keys(counts).sort().map(function (k) { return k + ': ' + counts[k]; }).join(', ');
  var rows = document.querySelectorAll('#tests tbody tr');
  var bar = document.getElementById('filter');
  ['all'].concat(Object.keys(counts).sort()).forEach(function (status) {
    var b = document.createElement('button');
    b.textContent = status;
    b.onclick = function () {
      rows.forEach(function (tr) { tr.hidden = status !== 'all' && tr.dataset.status !== status; });
    };
    bar.appendChild(b);
  });
  document.documentElement.dataset.rendered = 'yes';
})();
`

function section(title: string, id: string, body: string[]): string[] {
  return body.length === 0 ? [] : [`<h2 id="${id}">${esc(title)}</h2>`, ...body]
}

function grouped(records: readonly TestRecord[]): string[] {
  const groups = new Map<string, string[]>()
  for (const r of records) groups.set(`${r.suite}: ${r.reason ?? ''}`, [...(groups.get(`${r.suite}: ${r.reason ?? ''}`) ?? []), r.id])
  return [...groups].map(([reason, ids]) => `<p>${esc(reason)}</p><ul>${ids.map((id) => `<li>${esc(id)}</li>`).join('')}</ul>`)
}

export function renderHtml(result: RunResult, benches: readonly BenchResult[] = []): string {
  const { runInfo, results } = result
  const total = countStatuses(results)
  const code = exitCodeFor(result)
  const verdict =
    code === 0 ? ['ok', 'every result as expected'] : code === 4 ? ['skip', 'nothing ran: every test skipped'] : ['bad', 'NOT as expected']
  const out: string[] = [
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head><meta charset="utf-8">',
    `<title>kvmconf report: ${esc(runInfo.backend)} on ${esc(runInfo.kernel)}</title>`,
    `<style>${STYLE}</style></head>`,
    '<body>',
    `<h1>kvmconf report</h1>`,
    `<p>${esc(describeRun(result))}</p>`,
    `<p class="verdict ${verdict[0]}" id="verdict">${esc(verdict[1] ?? '')} (exit ${code}): ${esc(summaryLine(total))}</p>`,
    `<p>Counted in the browser: <span id="js-summary">(script not run)</span></p>`,
    '<h2 id="summary">Summary</h2>',
    '<table id="suites"><thead><tr><th>suite</th>' + STATUSES.map((s) => `<th class="${s}">${s}</th>`).join('') + '</tr></thead><tbody>',
  ]
  for (const [suite, c] of countBySuite(results)) {
    out.push(`<tr><td>${esc(suite)}</td>${STATUSES.map((s) => `<td class="n">${c[s]}</td>`).join('')}</tr>`)
  }
  out.push('</tbody></table>')
  out.push('<h2 id="run">Run</h2><table>')
  for (const [k, v] of Object.entries(runInfo)) if (v !== undefined && v !== null) out.push(`<tr><th>${esc(k)}</th><td>${esc(Array.isArray(v) ? v.join(', ') : String(v))}</td></tr>`)
  out.push('</table>')

  const bad = results.filter((r) => r.status === 'FAIL' || r.status === 'TIMEOUT' || r.status === 'CRASH' || r.status === 'XPASS')
  out.push(
    ...section(
      'Not as expected',
      'failures',
      bad.map((r) => `<div class="failure"><span class="${r.status}">${r.status}</span> ${esc(fullId(r))}<pre>${esc(describeFailure(r, 40).join('\n'))}</pre></div>`),
    ),
  )
  for (const e of result.errors ?? []) out.push(`<div class="failure"><span class="FAIL">RUN ERROR</span><pre>${esc(e)}</pre></div>`)
  out.push(
    ...section(
      'Kernel warnings',
      'warnings',
      results.filter((r) => r.status === 'WARN').map((r) => `<div class="failure"><span class="WARN">WARN</span> ${esc(fullId(r))}<pre>${esc(describeFailure(r, 40).join('\n'))}</pre></div>`),
    ),
  )
  out.push(...section('Expected failures', 'xfail', grouped(results.filter((r) => r.status === 'XFAIL'))))
  out.push(...section('Skipped', 'skipped', grouped(results.filter((r) => r.status === 'SKIP'))))

  for (const bench of benches) {
    out.push(`<h2 id="bench">Benchmarks: ${esc(bench.runInfo.backend)} on ${esc(bench.runInfo.kernel)}</h2>`)
    for (const p of plotBench(bench)) out.push(`<figure id="plot-${esc(p.id)}">${p.svg}<figcaption>${esc(`${p.benchmark}: ${p.metric}`)}</figcaption></figure>`)
  }

  out.push('<h2 id="all">All tests</h2><div id="filter"></div>')
  out.push('<table id="tests"><thead><tr><th>status</th><th>suite</th><th>test</th><th>ms</th><th>reason</th></tr></thead><tbody>')
  for (const r of results) {
    out.push(`<tr data-status="${r.status}"><td class="${r.status}">${r.status}</td><td>${esc(r.suite)}</td><td>${esc(r.id)}</td><td class="n">${r.durationMs}</td><td>${esc(r.reason ?? '')}</td></tr>`)
  }
  out.push('</tbody></table>')
  // JSON inside <script> must not contain "</script" or "<!--": every "<" (only ever inside a JSON
  // string) is written as \u003c, which JSON.parse reads back as "<".
  out.push(`<script type="application/json" id="kvmconf-result">${JSON.stringify(result).replace(/</g, '\\u003c')}</script>`)
  out.push(`<script>${SCRIPT}</script>`, '</body>', '</html>')
  return out.join('\n') + '\n'
}
