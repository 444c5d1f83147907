// Issue 7: time to recovery of each drill whose runbook fixes the fault on its own. Starts its own
// sandbox (temp XDG dirs), then for each such drill declared in the runbooks (`drills:` with
// `recovers: true`): inject the fault, run the runbook unattended (--yes), and report the wall time
// from the start of the run to its final `trivy validate` passing — plus where that time went.
// RUNS=N repeats each drill and reports the median. DRILLS=scan-500,db-stale limits the runbooks.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { median } from './lib.mjs'

const root = join(fileURLToPath(import.meta.url), '..', '..')
const labctl = join(root, 'bin', 'labctl')
const runs = Number(process.env.RUNS ?? 3)
const only = process.env.DRILLS ? new Set(process.env.DRILLS.split(',')) : undefined
const tmp = mkdtempSync(join(tmpdir(), 'labctl-bench-drills-'))
const env = { ...process.env, XDG_CONFIG_HOME: join(tmp, 'config'), XDG_STATE_HOME: join(tmp, 'state'), LABCTL_SANDBOX_DIR: join(tmp, 'sb'), NO_COLOR: '1', CI: '1' }

const run = (args, { check = true } = {}) => {
  const r = spawnSync(labctl, args, { env, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })
  if (check && r.status !== 0) throw new Error(`labctl ${args.join(' ')} exited ${r.status}: ${r.stderr.slice(-500)}`)
  return r
}
const secs = (ms) => `${(ms / 1000).toFixed(1)} s`

try {
  run(['sandbox', 'up', '--json'])
  const faults = run(['sandbox', 'break', '--help']).stdout
  const { runbooks } = JSON.parse(run(['runbook', 'list', '--json']).stdout)
  const drills = runbooks.flatMap((rb) => rb.drills.filter((d) => d.recovers && d.fault !== 'none').map((d) => ({ runbook: rb.name, ...d })))
  const rows = []
  for (const d of drills) {
    if (only && !only.has(d.runbook)) continue
    if (!new RegExp(`^\\s+${d.fault}\\s`, 'm').test(faults)) {
      rows.push({ d, skipped: `the sandbox cannot inject "${d.fault}" yet` })
      continue
    }
    const ttr = []
    const steps = new Map()
    let last
    for (let i = 0; i < runs; i++) {
      run(['sandbox', 'break', d.fault])
      const t0 = process.hrtime.bigint()
      const r = run(['runbook', 'run', d.runbook, '--lab', 'sandbox', '--yes', '--json'], { check: false })
      const ms = Number(process.hrtime.bigint() - t0) / 1e6
      last = JSON.parse(r.stdout)
      if (r.status !== 0 || last.status !== 'completed' || last.verified !== true || !d.cause.includes(last.cause?.id)) {
        throw new Error(`drill ${d.fault} → ${d.runbook} did not recover: exit ${r.status}, ${last.status}, cause ${last.cause?.id}\n${last.steps?.map((s) => `  ${s.id}: ${s.outcome} ${s.summary}`).join('\n')}`)
      }
      ttr.push(ms)
      for (const s of last.steps) steps.set(s.id, [...(steps.get(s.id) ?? []), s.durationMs])
      run(['sandbox', 'heal'])
    }
    rows.push({ d, ttr: median(ttr), cause: last.cause.id, steps: [...steps].map(([id, xs]) => `${id} ${secs(median(xs))}`) })
  }
  console.log(`Drills: time to recovery (fault injected → runbook run --yes → final trivy validate passing), median of ${runs} runs:`)
  for (const r of rows) {
    const name = `${r.d.fault} → ${r.d.runbook}`.padEnd(30)
    if (r.skipped) console.log(`  ${name} skipped: ${r.skipped}`)
    else console.log(`  ${name} ${secs(r.ttr).padStart(7)}  cause ${r.cause.padEnd(14)} (${r.steps.join(', ')})`)
  }
} finally {
  spawnSync(labctl, ['sandbox', 'down'], { env })
  rmSync(tmp, { recursive: true, force: true })
}
