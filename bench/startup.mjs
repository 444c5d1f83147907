// Issue 10 target (issue 2 had ≤ 2×): `labctl --version` and `labctl trivy validate --help` ≤ 1.3× `node -e 0`,
// same machine, same run (interleaved, medians).
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { compare } from './lib.mjs'
import { timeOnce } from './lib.mjs'

const root = join(fileURLToPath(import.meta.url), '..', '..')
const node = existsSync(join(root, '.tools/node/bin/node')) ? join(root, '.tools/node/bin/node') : process.execPath
const run = join(root, 'bin/run.js')
const helpCmd = existsSync(join(root, 'dist/commands/trivy/validate.js')) ? ['trivy', 'validate', '--help'] : ['config', 'validate', '--help']
const runs = Number(process.env.RUNS ?? 15)
const goal = 1.3

const m = compare(
  [
    { name: 'node -e 0', fn: () => timeOnce(node, ['-e', '0'], { expectStatus: 0 }) },
    { name: 'labctl --version', fn: () => timeOnce(node, [run, '--version'], { expectStatus: 0 }) },
    { name: `labctl ${helpCmd.join(' ')}`, fn: () => timeOnce(node, [run, ...helpCmd], { expectStatus: 0 }) },
  ],
  runs,
)
const base = m['node -e 0']
console.log(`startup, median of ${runs} runs (node ${process.version}):`)
for (const [name, ms] of Object.entries(m)) {
  console.log(`  ${name.padEnd(34)} ${ms.toFixed(1).padStart(7)} ms   ${(ms / base).toFixed(2)}× node -e 0${name === 'node -e 0' ? '' : ms / base <= goal ? `  (goal ≤ ${goal}×: met)` : `  (goal ≤ ${goal}×: MISSED)`}`)
}
