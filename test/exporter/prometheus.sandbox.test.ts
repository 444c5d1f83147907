// A real Prometheus (Debian's) on the lab network's `monitor` node scrapes the real `labctl trivy exporter`
// (on the workstation's lab address) probing the sandbox lab, and the edge's own HAProxy exporter
// (job haproxy-edge, the edge's lab address :8405); it evaluates monitoring/labctl-trivy.rules.yml, and
// the alerts follow injected faults: wrong token on the server → TrivyCanaryFailing firing; heal → it
// clears; service stopped → TrivyServiceNotActive, TrivyHealthzFailing and, from HAProxy's metrics,
// TrivyEdgeBackendDown; stale DB, certificate near expiry each fire theirs; exporter stopped →
// TrivyExporterDown. A loopback sandbox (no lab network) runs it on 127.0.0.1 without the edge job.
// The rules are the shipped ones with their `for:` durations shortened to seconds (same expressions).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa, type ResultPromise } from 'execa'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { freePorts } from '../../src/sandbox/proc.js'
import { LABCTL, ROOT, labctl } from '../helpers.js'

const sb = inject('sandbox')
const tmp = mkdtempSync(join(tmpdir(), 'labctl-prometheus-'))
type Alert = { labels: Record<string, string>; state: 'pending' | 'firing'; value: string }

let exporter: ResultPromise | undefined
let prometheus: ResultPromise | undefined
let exporterLog = ''
let exporterPort = 0
let promPort = 0
/** Where Prometheus, the exporter and the edge's metrics are reached (lab addresses on a lab network). */
let at = { prom: '127.0.0.1', exporter: '127.0.0.1', edge: undefined as string | undefined, monitorNs: undefined as string | undefined }
const promUrl = (path: string): string => `http://${at.prom}:${promPort}${path}`

async function alerts(): Promise<Alert[]> {
  const res = await fetch(promUrl('/api/v1/alerts'), { signal: AbortSignal.timeout(3000) })
  return ((await res.json()) as { data: { alerts: Alert[] } }).data.alerts
}
const find = (all: Alert[], name: string, host?: string): Alert | undefined => all.find((a) => a.labels.alertname === name && (host === undefined || a.labels.host === host))

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, ms: number): Promise<T> {
  const end = Date.now() + ms
  let last: unknown
  while (Date.now() < end) {
    try {
      const v = await fn()
      if (v) return v
    } catch (err) {
      last = err
    }
    await new Promise((r) => setTimeout(r, 500))
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}\nexporter log:\n${exporterLog.slice(-3000)}`)
}

function startExporter(): ResultPromise {
  const child = execa(LABCTL, ['trivy', 'exporter', '--lab', 'sandbox', '--listen', `${at.exporter}:${exporterPort}`, '--interval', '2', '--ssh-interval', '5', '--timeout', '3000', '--ssh-timeout', '5000'], {
    reject: false,
    env: { ...process.env, NO_COLOR: '1' },
    stdin: 'ignore',
  })
  child.stderr?.on('data', (d: Buffer) => (exporterLog += d.toString()))
  return child
}

beforeAll(async () => {
  ;[exporterPort, promPort] = (await freePorts(2)) as [number, number]
  const st = await labctl(['sandbox', 'status', '--json'], { timeoutMs: 30_000 })
  const net = (JSON.parse(st.stdout) as { network?: { workstation: string; nodes: Array<{ name: string; address: string; namespace: string }> } }).network
  const node = (n: string) => net?.nodes.find((x) => x.name === n)
  if (net && node('monitor')) at = { prom: node('monitor')!.address, exporter: net.workstation, edge: node('edge')!.address, monitorNs: node('monitor')!.namespace }
  const rules = readFileSync(join(ROOT, 'monitoring', 'labctl-trivy.rules.yml'), 'utf8').replace(/^(\s+)for: \d+m$/gm, '$1for: 3s')
  writeFileSync(join(tmp, 'rules.yml'), rules)
  writeFileSync(
    join(tmp, 'prometheus.yml'),
    `global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [${join(tmp, 'rules.yml')}]
scrape_configs:
  - job_name: labctl-trivy
    scrape_timeout: 1s
    static_configs: [{ targets: ['${at.exporter}:${exporterPort}'] }]
${at.edge ? `  - job_name: haproxy-edge
    scrape_timeout: 1s
    static_configs: [{ targets: ['${at.edge}:8405'] }]
` : ''}`,
  )
  exporter = startExporter()
  const promArgs = [`--config.file=${join(tmp, 'prometheus.yml')}`, `--storage.tsdb.path=${join(tmp, 'data')}`, `--web.listen-address=${at.prom}:${promPort}`, '--log.level=warn']
  prometheus = execa(at.monitorNs ? 'nsenter' : 'prometheus', at.monitorNs ? [`--net=/run/netns/${at.monitorNs}`, '--', 'prometheus', ...promArgs] : promArgs, {
    reject: false,
    stdin: 'ignore',
    cwd: tmp,
  })
}, 60_000)

afterAll(async () => {
  for (const p of [exporter, prometheus]) {
    if (p && p.exitCode === null) {
      p.kill('SIGTERM')
      await Promise.race([p, new Promise((r) => setTimeout(r, 5000))])
      if (p.exitCode === null) p.kill('SIGKILL')
    }
  }
  await labctl(['sandbox', 'heal', '--all'], { timeoutMs: 60_000 })
  rmSync(tmp, { recursive: true, force: true })
}, 90_000)

async function query(q: string): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>> {
  const res = await fetch(promUrl(`/api/v1/query?query=${encodeURIComponent(q)}`), { signal: AbortSignal.timeout(3000) })
  return ((await res.json()) as { data: { result: Array<{ metric: Record<string, string>; value: [number, string] }> } }).data.result
}

describe('a real Prometheus on the exporter', () => {
  it('scrapes the exporter and sees a healthy scanner', async () => {
    await until(
      'canary success for edge and trivy-0 in Prometheus',
      async () => {
        const by = Object.fromEntries((await query('labctl_trivy_canary_success')).map((x) => [x.metric.host, x.value[1]]))
        return by.edge === '1' && by['trivy-0'] === '1'
      },
      60_000,
    )
    if (at.monitorNs) {
      // Prometheus really runs on the monitor node, and scrapes the edge's HAProxy: the backend has its server UP.
      const ns = await execa('ip', ['netns', 'identify', String(prometheus!.pid)], { reject: false, timeout: 5000 })
      expect(ns.stdout.trim()).toBe(at.monitorNs)
      await until('the edge backend seen UP through haproxy-edge', async () => (await query('haproxy_backend_active_servers{job="haproxy-edge",proxy="trivy-vm-be"}'))[0]?.value[1] === '1', 30_000)
    }
    // The SSH probe too: the unit is active, the disk ratio is known.
    await until(
      'SSH metrics',
      async () => {
        const text = await (await fetch(`http://${at.exporter}:${exporterPort}/metrics`, { signal: AbortSignal.timeout(3000) })).text()
        return /^labctl_trivy_unit_state\{host="trivy-0",state="active"\} 1$/m.test(text) && /^labctl_trivy_disk_used_ratio\{host="trivy-0"\} 0\.\d+/m.test(text)
      },
      30_000,
    )
    const all = await alerts()
    expect(find(all, 'TrivyCanaryFailing')).toBeUndefined()
    expect(find(all, 'TrivyTokenCheckOpen')).toBeUndefined()
    expect(find(all, 'TrivyExporterDown')).toBeUndefined()
  }, 120_000)

  it('a wrong token on the server fires TrivyCanaryFailing; heal clears it', async () => {
    const b = await labctl(['sandbox', 'break', 'wrong-token'], { timeoutMs: 60_000 })
    expect(b.exitCode, String(b.stderr)).toBe(0)
    const pending = await until('TrivyCanaryFailing pending or firing', async () => find(await alerts(), 'TrivyCanaryFailing', 'trivy-0'), 60_000)
    expect(['pending', 'firing']).toContain(pending.state)
    await until('TrivyCanaryFailing firing for the host and the edge', async () => {
      const all = await alerts()
      return find(all, 'TrivyCanaryFailing', 'trivy-0')?.state === 'firing' && find(all, 'TrivyCanaryFailing', 'edge')?.state === 'firing'
    }, 60_000)
    // The 401 probes still see 401: the token check is not open.
    expect(find(await alerts(), 'TrivyTokenCheckOpen')).toBeUndefined()
    const h = await labctl(['sandbox', 'heal'], { timeoutMs: 60_000 })
    expect(h.exitCode, String(h.stderr)).toBe(0)
    await until('TrivyCanaryFailing cleared', async () => !find(await alerts(), 'TrivyCanaryFailing'), 60_000)
    expect(exporterLog).toMatch(/http probe of|ok again|serving/)
  }, 180_000)

  it('the service stopped fires TrivyServiceNotActive (SSH probe) and TrivyHealthzFailing on the host', async () => {
    const b = await labctl(['sandbox', 'break', 'service-stopped'], { timeoutMs: 60_000 })
    expect(b.exitCode, String(b.stderr)).toBe(0)
    await until('TrivyServiceNotActive and TrivyHealthzFailing (and, from the edge, TrivyEdgeBackendDown) firing', async () => {
      const all = await alerts()
      const edgeDown = !at.edge || find(all, 'TrivyEdgeBackendDown')?.state === 'firing'
      return find(all, 'TrivyServiceNotActive', 'trivy-0')?.state === 'firing' && find(all, 'TrivyHealthzFailing', 'trivy-0')?.state === 'firing' && edgeDown
    }, 90_000)
    const h = await labctl(['sandbox', 'heal'], { timeoutMs: 60_000 })
    expect(h.exitCode, String(h.stderr)).toBe(0)
    await until('both cleared', async () => {
      const all = await alerts()
      return !find(all, 'TrivyServiceNotActive') && !find(all, 'TrivyHealthzFailing') && !find(all, 'TrivyEdgeBackendDown')
    }, 90_000)
  }, 240_000)

  it('a stale DB fires TrivyDBStale, an expiring certificate TrivyCertExpiryCritical; heal clears both', async () => {
    for (const fault of ['db-stale', 'cert-expiring']) {
      const b = await labctl(['sandbox', 'break', fault], { timeoutMs: 60_000 })
      expect(b.exitCode, String(b.stderr)).toBe(0)
    }
    await until('TrivyDBStale and TrivyCertExpiryCritical firing', async () => {
      const all = await alerts()
      return find(all, 'TrivyDBStale', 'trivy-0')?.state === 'firing' && find(all, 'TrivyCertExpiryCritical', 'edge')?.state === 'firing'
    }, 90_000)
    // 3 days left: below both thresholds of the inventory (warn 21 d, crit 7 d).
    expect(find(await alerts(), 'TrivyCertExpiringSoon', 'edge')?.state).toBe('firing')
    const h = await labctl(['sandbox', 'heal', '--all'], { timeoutMs: 60_000 })
    expect(h.exitCode, String(h.stderr)).toBe(0)
    await until('both cleared', async () => {
      const all = await alerts()
      return !find(all, 'TrivyDBStale') && !find(all, 'TrivyCertExpiryCritical') && !find(all, 'TrivyCanaryFailing')
    }, 90_000)
  }, 240_000)

  it('the exporter stopped fires TrivyExporterDown, and it never leaked the token', async () => {
    exporter!.kill('SIGTERM')
    const r = await exporter!
    expect(r.exitCode).toBe(0)
    await until('TrivyExporterDown firing', async () => find(await alerts(), 'TrivyExporterDown')?.state === 'firing', 60_000)
    const token = readFileSync(join(sb.dir, 'secrets', 'trivy-vm', 'token'), 'utf8').trim()
    expect(token.length).toBeGreaterThan(8)
    expect(exporterLog).not.toContain(token)
  }, 120_000)
})
