// Issue 4 target: `labctl trivy check` ≤ 1.5× a bare `ssh trivy-0 true`, same machine, same run.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { compare, timeOnce } from './lib.mjs'

const root = join(fileURLToPath(import.meta.url), '..', '..')
const labctl = join(root, 'bin', 'labctl')
const runs = Number(process.env.RUNS ?? 11)
const tmp = mkdtempSync(join(tmpdir(), 'labctl-bench-check-'))
const env = { ...process.env, XDG_CONFIG_HOME: join(tmp, 'config'), LABCTL_SANDBOX_DIR: join(tmp, 'sb'), CI: '1' }
try {
  const up = JSON.parse(spawnSync(labctl, ['sandbox', 'up', '--json'], { env, encoding: 'utf8' }).stdout)
  const inv = readFileSync(up.inventory, 'utf8')
  const port = /port: (\d+)/.exec(inv)[1]
  const key = /identityFile: (\S+)/.exec(inv)[1]
  const known = /knownHostsFile: (\S+)/.exec(inv)[1]
  const ssh = ['-p', port, '-i', key, '-o', `UserKnownHostsFile=${known}`, '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', 'labops@127.0.0.1', 'true']
  const m = compare(
    [
      { name: 'ssh trivy-0 true', fn: () => timeOnce('ssh', ssh, { expectStatus: 0 }) },
      { name: 'labctl trivy check', fn: () => timeOnce(labctl, ['trivy', 'check', '--lab', 'sandbox'], { env, expectStatus: 0 }) },
      { name: 'labctl trivy status', fn: () => timeOnce(labctl, ['trivy', 'status', '--lab', 'sandbox'], { env, expectStatus: 0 }) },
    ],
    runs,
  )
  const base = m['ssh trivy-0 true']
  console.log(`SSH commands vs a bare ssh, median of ${runs} runs:`)
  for (const [name, ms] of Object.entries(m)) console.log(`  ${name.padEnd(22)} ${ms.toFixed(0).padStart(6)} ms  ${(ms / base).toFixed(2)}×`)
  const ratio = m['labctl trivy check'] / base
  console.log(`  check ratio ${ratio.toFixed(2)}× (goal ≤ 1.5×: ${ratio <= 1.5 ? 'met' : 'MISSED'})`)
} finally {
  spawnSync(labctl, ['sandbox', 'down'], { env })
  rmSync(tmp, { recursive: true, force: true })
}
