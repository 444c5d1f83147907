// Issue 10 target (issue 2 had ≤ 2×): `labctl --version` and `labctl trivy validate --help` ≤ 1.3× `node -e 0`,
// same machine, same run (interleaved, medians of wall time). On a busy machine wall time is noisy, so the
// CPU time each command uses (user + sys, summed over a batch of runs by the shell's `times`) is printed too.
import { existsSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { compare, timeOnce } from './lib.mjs'

const root = join(fileURLToPath(import.meta.url), '..', '..')
const node = existsSync(join(root, '.tools/node/bin/node')) ? join(root, '.tools/node/bin/node') : process.execPath
const run = join(root, 'bin/run.js')
const helpCmd = existsSync(join(root, 'dist/commands/trivy/validate.js')) ? ['trivy', 'validate', '--help'] : ['config', 'validate', '--help']
const runs = Number(process.env.RUNS ?? 15)
const goal = 1.3

const cases = [
  { name: 'node -e 0', args: ['-e', '0'] },
  { name: 'labctl --version', args: [run, '--version'] },
  { name: `labctl ${helpCmd.join(' ')}`, args: [run, ...helpCmd] },
]
// BASE=DIR (another built checkout, e.g. main): its labctl interleaved with this one's.
if (process.env.BASE) {
  const baseRun = join(process.env.BASE, 'bin/run.js')
  cases.push({ name: 'base: labctl --version', args: [baseRun, '--version'] }, { name: `base: labctl ${helpCmd.join(' ')}`, args: [baseRun, ...helpCmd] })
}
const m = compare(cases.map((c) => ({ name: c.name, fn: () => timeOnce(node, c.args, { expectStatus: 0 }) })), runs)

/** CPU ms per run (user + sys of the children), from dash's `times` after `runs` runs in one shell. */
function cpuPerRun(args) {
  const loop = `i=0; while [ $i -lt ${runs} ]; do "$@" >/dev/null 2>&1 || exit 1; i=$((i+1)); done; times`
  const r = spawnSync('/bin/sh', ['-c', loop, 'sh', node, ...args], { encoding: 'utf8', timeout: 120_000 })
  const children = r.status === 0 ? r.stdout.trim().split('\n').at(-1) : undefined
  const secs = children?.match(/(\d+)m([\d.]+)s\s+(\d+)m([\d.]+)s/)
  if (!secs) throw new Error(`could not time ${args.join(' ')}: ${r.stderr || r.stdout}`)
  return ((Number(secs[1]) * 60 + Number(secs[2]) + Number(secs[3]) * 60 + Number(secs[4])) * 1000) / runs
}
const cpu = Object.fromEntries(cases.map((c) => [c.name, cpuPerRun(c.args)]))

const base = m['node -e 0']
console.log(`startup, median of ${runs} runs (node ${process.version}); CPU = user + sys per run over ${runs} runs:`)
for (const c of cases) {
  const ms = m[c.name]
  const verdict = c.name === 'node -e 0' || c.name.startsWith('base:') ? '' : ms / base <= goal ? `  (goal ≤ ${goal}×: met)` : `  (goal ≤ ${goal}×: MISSED)`
  console.log(`  ${c.name.padEnd(30)} ${ms.toFixed(1).padStart(7)} ms   ${(ms / base).toFixed(2)}× node -e 0${verdict.padEnd(20)}   CPU ${cpu[c.name].toFixed(1).padStart(5)} ms = ${(cpu[c.name] / cpu['node -e 0']).toFixed(2)}×`)
}
