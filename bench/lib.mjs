// Small helpers shared by the bench scripts: run commands interleaved, report medians.
import { spawnSync } from 'node:child_process'

export function timeOnce(cmd, args, opts = {}) {
  const t0 = process.hrtime.bigint()
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], ...opts })
  const ms = Number(process.hrtime.bigint() - t0) / 1e6
  if (opts.expectStatus !== undefined && r.status !== opts.expectStatus) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${String(r.stderr).slice(0, 300)}`)
  }
  return ms
}

export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

/** Runs each case `runs` times, interleaved so machine noise hits all cases alike. */
export function compare(cases, runs) {
  const times = Object.fromEntries(cases.map((c) => [c.name, []]))
  for (const c of cases) c.fn() // warm-up
  for (let i = 0; i < runs; i++) for (const c of cases) times[c.name].push(c.fn())
  return Object.fromEntries(cases.map((c) => [c.name, median(times[c.name])]))
}
