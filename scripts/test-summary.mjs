// Reads vitest's JSON report and prints one line per tier (files, tests, wall time), then the plain
// closing line any CI reads: "tests: N passed, N failed[, N skipped]". Usage: node test-summary.mjs REPORT
import { readFileSync } from 'node:fs'
import * as path from 'node:path'

const root = new URL('..', import.meta.url).pathname
const report = JSON.parse(readFileSync(process.argv[2], 'utf8'))
// The tiers' globs live in vitest.config.ts; a Node.js that cannot load .ts (before 22.18) or has no
// path.matchesGlob gets the closing line only.
const UNIT = await import('../vitest.config.ts').then((m) => m.UNIT, () => undefined)
const tierOf = (file) => (UNIT.some((g) => path.matchesGlob(path.relative(root, file), g)) ? 'unit' : 'sandbox')
const tiers = new Map()
for (const f of UNIT && path.matchesGlob ? (report.testResults ?? []) : []) {
  const t = tiers.get(tierOf(f.name)) ?? { files: 0, passed: 0, failed: 0, skipped: 0, start: Infinity, end: 0 }
  t.files++
  for (const a of f.assertionResults ?? []) {
    if (a.status === 'passed') t.passed++
    else if (a.status === 'failed') t.failed++
    else t.skipped++
  }
  t.start = Math.min(t.start, f.startTime)
  t.end = Math.max(t.end, f.endTime)
  tiers.set(tierOf(f.name), t)
}
for (const name of ['unit', 'sandbox']) {
  const t = tiers.get(name)
  if (!t) continue
  const secs = Math.round((t.end - t.start) / 1000)
  console.log(`tier ${name}: ${t.files} files, ${t.passed} ok, ${t.failed} not ok${t.skipped ? `, ${t.skipped} skipped` : ''} in ${secs} s`)
}
const skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0)
console.log(`tests: ${report.numPassedTests} passed, ${report.numFailedTests} failed` + (skipped ? `, ${skipped} skipped` : ''))
