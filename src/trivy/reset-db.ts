// The seed's fix for 500s and a corrupted DB, as a procedure: stop, move the DB aside (or purge it),
// optionally clear the scan cache, fetch a fresh DB from the offline mirror when one is configured,
// start, and wait until /version shows a fresh DB and a canary scan passes. Safe to re-run.
import type { LoadedInventory } from '../inventory/load.js'
import { inventoryPath } from '../inventory/load.js'
import type { ScannerHost } from '../inventory/schema.js'
import { LabctlError, oneLine } from '../errors.js'
import type { Remote } from '../ssh/index.js'
import { canaryProblem, canaryScan, getHealthz, getVersion } from './api.js'
import { loadToken } from './token.js'
import { dbAge } from './freshness.js'
import { edgeBase, hostBase, trivyAgent } from './endpoint.js'
import { quietTrivyAssignments } from './quiet.js'

export type ResetDbOptions = {
  loaded: LoadedInventory
  host: ScannerHost
  /** The run's SSH session. */
  remote: Remote
  purge: boolean
  scanCache: boolean
  waitMs: number
  tokenFile?: string | undefined
  signal?: AbortSignal | undefined
  progress?: ((m: string) => void) | undefined
}
export type ResetPlanOptions = Pick<ResetDbOptions, 'loaded' | 'host' | 'purge' | 'scanCache'>
export type ResetStep = { step: string; detail: string; durationMs: number }
export type ResetDbResult = { host: string; steps: ResetStep[]; movedTo?: string; downtimeMs: number; db: { updatedAt: string }; canary: string }

export function resetPlan(o: ResetPlanOptions): string[] {
  const { host } = o
  const t = o.loaded.inventory.trivy
  return [
    `stop ${t.serviceName} on ${host.name}`,
    o.purge ? `purge the vulnerability DB (trivy clean --vuln-db, cache ${t.cacheDir})` : `move ${t.cacheDir}/db aside to ${t.cacheDir}/db.broken-<time> for forensics`,
    ...(o.scanCache ? [`clear the scan cache (trivy clean --scan-cache)`] : []),
    t.dbRepositories.length ? `download a fresh DB from ${t.dbRepositories.join(', ')}` : 'let the server download a fresh DB at start (default repositories)',
    `start ${t.serviceName}, wait for a fresh DB in /version and a passing canary scan`,
  ]
}

const QUIET = quietTrivyAssignments()

export async function resetDb(o: ResetDbOptions): Promise<ResetDbResult> {
  const { loaded, host, remote, signal } = o
  const progress = o.progress ?? (() => {})
  const inv = loaded.inventory
  const t = inv.trivy
  const steps: ResetStep[] = []
  const token = loadToken({ tokenFile: o.tokenFile, secretsDir: inventoryPath(loaded, inv.secrets.dir) }).token
  const step = async <T>(name: string, fn: () => Promise<T>, detail: (r: T) => string): Promise<T> => {
    if (signal?.aborted) throw signal.reason
    progress(`${host.name}: ${name}`)
    const started = performance.now()
    const r = await fn()
    steps.push({ step: name, detail: detail(r), durationMs: Math.round(performance.now() - started) })
    return r
  }
  const asService = (args: string[], timeoutMs: number) =>
    remote.run(host, ['env', `TRIVY_CACHE_DIR=${t.cacheDir}`, ...QUIET, 'trivy', ...args], { user: t.serviceUser, timeoutMs, check: true, ...(signal ? { signal } : {}) })

  const stopAt = Date.now()
  await step('stop service', () => remote.run(host, ['systemctl', 'stop', t.serviceName], { sudo: true, timeoutMs: 60_000, check: true }), () => `${t.serviceName} stopped`)
  let movedTo: string | undefined
  if (o.purge) {
    await step('purge DB', () => asService(['clean', '--vuln-db'], 120_000), () => 'trivy clean --vuln-db')
  } else {
    const dest = `${t.cacheDir}/db.broken-${new Date().toISOString().replace(/[:.]/g, '-')}`
    const moved = await step(
      'move DB aside',
      () => remote.run(host, ['sh', '-c', 'if [ -d "$1/db" ]; then mv "$1/db" "$2" && echo moved; else echo absent; fi', 'labctl-reset', t.cacheDir, dest], { sudo: true, timeoutMs: 60_000, check: true }),
      (r) => (r.stdout.trim() === 'moved' ? `kept as ${dest}` : 'no DB to move (already reset?)'),
    )
    if (moved.stdout.trim() === 'moved') movedTo = dest
  }
  if (o.scanCache) await step('clear scan cache', () => asService(['clean', '--scan-cache'], 120_000), () => 'trivy clean --scan-cache')
  if (t.dbRepositories.length) {
    await step(
      'download DB',
      () => asService(['image', '--download-db-only', '--cache-dir', t.cacheDir, ...t.dbRepositories.flatMap((r) => ['--db-repository', r])], 600_000),
      () => `from ${t.dbRepositories.join(', ')}`,
    )
  }
  await step('start service', () => remote.run(host, ['systemctl', 'start', t.serviceName], { sudo: true, timeoutMs: 60_000, check: true }), () => `${t.serviceName} started`)

  // Wait for the server to answer with a fresh DB, then prove it with the canary.
  const base = hostBase(inv, host)
  const agent = trivyAgent(loaded)
  try {
    const db = await step(
      'wait for fresh DB',
      async () => {
        const deadline = Date.now() + o.waitMs
        let last = 'no answer yet'
        for (;;) {
          if (signal?.aborted) throw signal.reason
          try {
            const v = await getVersion(base, { dispatcher: agent, timeoutMs: 3000 })
            const fresh = v.VulnerabilityDB !== undefined && dbAge(v.VulnerabilityDB.UpdatedAt, inv.thresholds.dbFreshnessHours).kind === 'fresh'
            // Back in service means through the edge too: HAProxy's health check must see it again.
            const edgeUp = base === edgeBase(inv) || (await getHealthz(edgeBase(inv), { dispatcher: agent, timeoutMs: 3000 }).then((r) => r.status === 200, () => false))
            if (v.VulnerabilityDB && fresh && edgeUp) return v.VulnerabilityDB
            last = v.VulnerabilityDB ? `DB still stale (UpdatedAt ${v.VulnerabilityDB.UpdatedAt})` : 'no DB in /version yet'
          } catch (err) {
            last = oneLine((err as Error).message ?? String(err), 120)
          }
          if (Date.now() > deadline) {
            throw new LabctlError(`${host.name} did not come back with a fresh DB within ${o.waitMs / 1000} s (${last})`, {
              suggestion: `read the service log: \`labctl trivy logs --host ${host.name} -n 50\`; the old DB is kept${movedTo ? ` at ${movedTo}` : ''}`,
            })
          }
          await new Promise((r) => setTimeout(r, 250))
        }
      },
      (d) => `UpdatedAt ${d.UpdatedAt}`,
    )
    const downtimeMs = Date.now() - stopAt
    const canary = await step(
      'canary scan',
      async () => {
        const out = await canaryScan({ baseUrl: base, token, tokenHeader: t.tokenHeader, dispatcher: agent, timeoutMs: 30_000 })
        const problem = canaryProblem(out)
        if (problem || out.kind !== 'ok') {
          throw new LabctlError(`the canary scan failed after the reset: ${problem}`, {
            suggestion: `run \`labctl trivy validate --host ${host.name}\``,
          })
        }
        return `${out.vulnerabilities.length} vulnerabilities for the canary`
      },
      (d) => d,
    )
    return { host: host.name, steps, ...(movedTo ? { movedTo } : {}), downtimeMs, db: { updatedAt: db.UpdatedAt }, canary }
  } finally {
    await agent.close()
  }
}
