// The exporter against loopback stand-ins (no sandbox): the real probe adapter, scheduler and HTTP server.
import { connect } from 'node:net'
import { execa } from 'execa'
import { afterEach, describe, expect, it } from 'vitest'
import type { HttpObservation, ProbeBackend, SshObservation } from '../../src/exporter/model.js'
import { createProbes } from '../../src/exporter/probes.js'
import { parseListen, startExporter, type Exporter } from '../../src/exporter/server.js'
import { renderMetrics } from '../../src/exporter/render.js'
import { startTestLab, TOKEN, type TestLab } from './lab.js'

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

async function get(url: string, timeoutMs = 5000): Promise<{ status: number; text: string; ms: number }> {
  const started = performance.now()
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) })
  return { status: res.status, text: await res.text(), ms: performance.now() - started }
}

/** The value of one series (exact labels) in a text exposition, or undefined. */
function value(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

const until = async (what: string, fn: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> => {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await fn()) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`timed out waiting for ${what}`)
}

async function lab(o: Parameters<typeof startTestLab>[0] = {}): Promise<TestLab> {
  const l = await startTestLab(o)
  cleanups.push(l.close)
  return l
}

async function exporter(l: TestLab, o: { intervalMs?: number; timeoutMs?: number; probeMinAgeMs?: number; logs?: string[]; backend?: ProbeBackend } = {}): Promise<Exporter> {
  const backend =
    o.backend ?? (await createProbes({ loaded: l.loaded, hosts: l.loaded.inventory.trivy.hosts, token: TOKEN, timeoutMs: o.timeoutMs ?? 2000, sshTimeoutMs: 1000, journalSince: '-60s', ssh: false }))
  const e = await startExporter({
    inventory: l.loaded.inventory,
    backend,
    listen: '127.0.0.1:0',
    httpIntervalMs: o.intervalMs ?? 1000,
    sshIntervalMs: 60_000,
    httpTimeoutMs: (o.timeoutMs ?? 2000) * 5,
    sshTimeoutMs: 2000,
    probeMinAgeMs: o.probeMinAgeMs ?? 10_000,
    staggerMs: 0,
    log: (line) => o.logs?.push(line),
  })
  cleanups.push(e.close)
  return e
}

describe('labctl trivy exporter', () => {
  it('serves every metric for the host and the edge, and scrapes never multiply scans', async () => {
    const l = await lab({ certDays: 30 })
    const e = await exporter(l, { intervalMs: 1000 })
    await until('first probes', async () => value((await get(`${e.url}/metrics`)).text, 'labctl_trivy_canary_success{host="edge"}') !== undefined && value((await get(`${e.url}/metrics`)).text, 'labctl_trivy_canary_success{host="trivy-0"}') !== undefined)
    const start = { edge: l.edge.scans, host: l.host.scans }
    // Scrape 10 times a second for 3 s: 30 scrapes, about 3 probe intervals.
    let text = ''
    for (let i = 0; i < 30; i++) {
      const r = await get(`${e.url}/metrics`)
      expect(r.status).toBe(200)
      text = r.text
      await new Promise((res) => setTimeout(res, 100))
    }
    const edgeScans = l.edge.scans - start.edge
    const hostScans = l.host.scans - start.host
    expect(edgeScans).toBeGreaterThanOrEqual(2)
    expect(edgeScans).toBeLessThanOrEqual(4)
    expect(hostScans).toBeGreaterThanOrEqual(2)
    expect(hostScans).toBeLessThanOrEqual(4)

    for (const host of ['edge', 'trivy-0']) {
      expect(value(text, `labctl_trivy_canary_success{host="${host}"}`)).toBe(1)
      expect(value(text, `labctl_trivy_canary_vulnerabilities{host="${host}"}`)).toBe(2)
      expect(value(text, `labctl_trivy_canary_duration_seconds{host="${host}"}`)).toBeGreaterThan(0)
      expect(value(text, `labctl_trivy_healthz_success{host="${host}"}`)).toBe(1)
      expect(value(text, `labctl_trivy_auth_probe_status_code{host="${host}",probe="no_token"}`)).toBe(401)
      expect(value(text, `labctl_trivy_auth_probe_status_code{host="${host}",probe="wrong_token"}`)).toBe(401)
      expect(value(text, `labctl_trivy_auth_open{host="${host}"}`)).toBe(0)
      expect(value(text, `labctl_trivy_server_info{host="${host}",version="0.74.0",pinned="0.74.0"}`)).toBe(1)
      expect(value(text, `labctl_trivy_version_matches_pin{host="${host}"}`)).toBe(1)
      expect(value(text, `labctl_trivy_db_present{host="${host}"}`)).toBe(1)
      const age = value(text, `labctl_trivy_db_age_seconds{host="${host}"}`)!
      expect(age).toBeGreaterThan(3590)
      expect(age).toBeLessThan(3700)
      expect(value(text, `labctl_trivy_db_next_update_timestamp_seconds{host="${host}"}`)).toBeGreaterThan(Date.now() / 1000)
      expect(value(text, `labctl_trivy_probe_success{host="${host}",probe="http"}`)).toBe(1)
      expect(value(text, `labctl_trivy_probe_errors_total{host="${host}",probe="http"}`)).toBe(0)
    }
    const expiry = value(text, 'labctl_trivy_tls_cert_expiry_seconds{host="edge"}')!
    expect(Math.abs(expiry - 30 * 86_400)).toBeLessThan(120)
    expect(value(text, 'labctl_trivy_tls_cert_valid{host="edge"}')).toBe(1)
    expect(value(text, 'labctl_trivy_db_freshness_sla_seconds')).toBe(24 * 3600)
    expect(value(text, 'labctl_trivy_tls_cert_crit_seconds')).toBe(7 * 86_400)
    expect(value(text, 'labctl_trivy_exporter_requests_total{path="/metrics",code="200"}')).toBeGreaterThanOrEqual(30)
    expect(text).toMatch(/^# TYPE labctl_trivy_probe_errors_total counter$/m)
    expect(text).not.toContain(TOKEN)
    // Prometheus's own linter: exposition format, HELP/TYPE, counter and unit naming conventions.
    const lint = await execa('promtool', ['check', 'metrics'], { input: text, reject: false, timeout: 20_000 })
    expect(lint.exitCode, lint.stdout + lint.stderr).toBe(0)
  })

  it('one hanging host delays nobody: the edge is served on time, the host reports errors, the exporter keeps serving', async () => {
    const l = await lab({ hostMode: 'hang' })
    const logs: string[] = []
    const started = Date.now()
    const e = await exporter(l, { intervalMs: 1000, timeoutMs: 1000, logs })
    await until('the edge canary', async () => value((await get(`${e.url}/metrics`)).text, 'labctl_trivy_canary_success{host="edge"}') === 1, 5000)
    expect(Date.now() - started).toBeLessThan(2500) // the hung host's canary deadline (4 x 1000 ms) did not hold it up
    await until('the host probe to fail', async () => value((await get(`${e.url}/metrics`)).text, 'labctl_trivy_probe_success{host="trivy-0",probe="http"}') === 0, 10_000)
    const r = await get(`${e.url}/metrics`)
    expect(r.ms).toBeLessThan(1000)
    expect(value(r.text, 'labctl_trivy_canary_success{host="trivy-0"}')).toBe(0)
    expect(value(r.text, 'labctl_trivy_healthz_success{host="trivy-0"}')).toBe(0)
    expect(value(r.text, 'labctl_trivy_probe_errors_total{host="trivy-0",probe="http"}')).toBeGreaterThanOrEqual(1)
    expect(value(r.text, 'labctl_trivy_server_info{host="trivy-0",version="0.74.0",pinned="0.74.0"}')).toBeUndefined()
    expect(value(r.text, 'labctl_trivy_probe_success{host="edge",probe="http"}')).toBe(1)
    expect(logs.some((x) => /http probe of trivy-0: .*timed out after 1000 ms/.test(x))).toBe(true)
    // /probe of the hung host answers within its deadline, with the failure, instead of hanging.
    const p = await get(`${e.url}/probe?target=trivy-0`, 10_000)
    expect(p.status).toBe(200)
    expect(value(p.text, 'labctl_trivy_probe_success{host="trivy-0",probe="http"}')).toBe(0)
  })

  it('never serves or logs the token, even when the server echoes it back', async () => {
    const l = await lab({ edgeMode: 'echo-token', hostMode: 'echo-token' })
    const logs: string[] = []
    const e = await exporter(l, { logs })
    await until('both probes ran', () => (e.scheduler.state('edge', 'http')?.runs ?? 0) >= 1 && (e.scheduler.state('trivy-0', 'http')?.runs ?? 0) >= 1, 5000)
    const answers = [await get(`${e.url}/metrics`), await get(`${e.url}/probe?target=edge`), await get(`${e.url}/probe?target=trivy-0`), await get(`${e.url}/`)]
    for (const a of answers) expect(a.text).not.toContain(TOKEN)
    expect(logs.join('\n')).toContain('[REDACTED]') // the echo was there, and redacted
    expect(logs.join('\n')).not.toContain(TOKEN)
    expect(value(answers[0]!.text, 'labctl_trivy_canary_success{host="edge"}')).toBe(0)
    // The version label a peer chose: one line, escaped, the token redacted.
    expect(answers[0]!.text).toMatch(/^labctl_trivy_server_info\{host="trivy-0",version="0\.74\.0 \\"\[REDACTED\]",pinned="0\.74\.0"\} 1$/m)
  })

  it('reports an open token check and a rejected token', async () => {
    const l = await lab({ edgeMode: 'open', hostMode: 'wrong-token' })
    const e = await exporter(l)
    await until('probes', async () => value((await get(`${e.url}/metrics`)).text, 'labctl_trivy_auth_open{host="trivy-0"}') !== undefined && value((await get(`${e.url}/metrics`)).text, 'labctl_trivy_auth_open{host="edge"}') !== undefined)
    const { text } = await get(`${e.url}/metrics`)
    expect(value(text, 'labctl_trivy_auth_open{host="edge"}')).toBe(1)
    expect(value(text, 'labctl_trivy_auth_probe_status_code{host="edge",probe="no_token"}')).toBe(200)
    expect(value(text, 'labctl_trivy_auth_open{host="trivy-0"}')).toBe(0)
    expect(value(text, 'labctl_trivy_canary_success{host="trivy-0"}')).toBe(0)
    // A 401 is a verdict, not an exporter error.
    expect(value(text, 'labctl_trivy_probe_success{host="trivy-0",probe="http"}')).toBe(1)
  })

  it('reports version drift, a stale DB and an expiring certificate', async () => {
    const l = await lab({ hostVersion: '0.73.1', dbUpdatedAt: new Date(Date.now() - 72 * 3600_000).toISOString(), certDays: 3 })
    const e = await exporter(l)
    await until('probes', async () => value((await get(`${e.url}/metrics`)).text, 'labctl_trivy_version_matches_pin{host="trivy-0"}') !== undefined && value((await get(`${e.url}/metrics`)).text, 'labctl_trivy_tls_cert_expiry_seconds{host="edge"}') !== undefined)
    const { text } = await get(`${e.url}/metrics`)
    expect(value(text, 'labctl_trivy_version_matches_pin{host="trivy-0"}')).toBe(0)
    expect(value(text, 'labctl_trivy_server_info{host="trivy-0",version="0.73.1",pinned="0.74.0"}')).toBe(1)
    expect(value(text, 'labctl_trivy_db_age_seconds{host="trivy-0"}')).toBeGreaterThan(72 * 3600 - 60)
    expect(value(text, 'labctl_trivy_tls_cert_expiry_seconds{host="edge"}')).toBeLessThan(3 * 86_400 + 60)
  })

  it('answers bad input with a clear HTTP error and keeps running', async () => {
    const l = await lab()
    const e = await exporter(l)
    const cases: Array<[string, number, RegExp]> = [
      ['/probe', 400, /exactly one target/],
      ['/probe?target=', 400, /exactly one target/],
      ['/probe?target=edge&target=trivy-0', 400, /exactly one target/],
      ['/probe?target=nope', 404, /unknown target "nope": known targets are edge, trivy-0/],
      ['/probe?target=edge&module=icmp', 400, /unknown module "icmp"/],
      ['/probe?target=trivy-0&module=ssh', 404, /no ssh probe/],
      ['/probe?target=edge&evil=1', 400, /unknown query parameter "evil"/],
      ['/nope', 404, /no such path/],
    ]
    for (const [path, code, re] of cases) {
      const r = await get(`${e.url}${path}`)
      expect(r.status, path).toBe(code)
      expect(r.text, path).toMatch(re)
    }
    const post = await fetch(`${e.url}/metrics`, { method: 'POST', body: 'x', signal: AbortSignal.timeout(2000) })
    expect(post.status).toBe(405)
    // A raw malformed request line and a client that sends half a request and stalls.
    const raw = await new Promise<string>((resolve) => {
      const s = connect(e.port, '127.0.0.1', () => s.write('GARBAGE \x00\x01 HTTP/9\r\n\r\n'))
      let out = ''
      s.on('data', (d) => (out += d.toString()))
      s.on('close', () => resolve(out))
      s.setTimeout(3000, () => s.destroy())
    })
    expect(raw).toMatch(/^HTTP\/1\.1 400/)
    const stalled = connect(e.port, '127.0.0.1', () => stalled.write('GET /metrics HTTP/1.1\r\nHost: x\r\n'))
    stalled.on('error', () => undefined)
    cleanups.push(async () => void stalled.destroy())
    const ok = await get(`${e.url}/metrics`)
    expect(ok.status).toBe(200)
    expect(value(ok.text, 'labctl_trivy_exporter_requests_total{path="/probe",code="400"}')).toBe(5)
  })

  it('/probe runs a target now, once for any number of concurrent callers, and reuses a fresh result', async () => {
    const l = await lab()
    const e = await exporter(l, { intervalMs: 3_600_000, probeMinAgeMs: 60_000 })
    await until('first run', () => (e.scheduler.state('edge', 'http')?.runs ?? 0) >= 1)
    const before = l.edge.scans
    const answers = await Promise.all(Array.from({ length: 20 }, () => get(`${e.url}/probe?target=edge`)))
    for (const a of answers) {
      expect(a.status).toBe(200)
      expect(value(a.text, 'labctl_trivy_canary_success{host="edge"}')).toBe(1)
      expect(a.text).not.toContain('host="trivy-0"')
    }
    expect(l.edge.scans - before).toBe(0) // the scheduled run is fresh (< 60 s)
    const e2 = await exporter(l, { intervalMs: 3_600_000, probeMinAgeMs: 1000 })
    await until('first run', () => (e2.scheduler.state('edge', 'http')?.runs ?? 0) >= 1)
    await new Promise((r) => setTimeout(r, 1100)) // the cached result is now too old for /probe
    const b2 = l.edge.scans
    await Promise.all(Array.from({ length: 20 }, () => get(`${e2.url}/probe?target=edge`)))
    expect(l.edge.scans - b2).toBe(1) // 20 concurrent callers, one run (later ones find it fresh)
  })

  it('an SSH probe that hangs is cut at its deadline, its next run is skipped, HTTP probes go on', async () => {
    const l = await lab()
    let sshCalls = 0
    let httpCalls = 0
    const backend: ProbeBackend = {
      targets: [{ name: 'trivy-0', http: true, ssh: true }],
      secrets: [TOKEN],
      http: async (): Promise<HttpObservation> => {
        httpCalls += 1
        return { healthz: true, errors: [] }
      },
      ssh: (_t: string, signal: AbortSignal): Promise<SshObservation> => {
        sshCalls += 1
        // Ignores its signal for 1.5 s (like a stuck SSH channel), then gives up.
        return new Promise((_, reject) => setTimeout(() => reject(new Error(`stuck ${signal.aborted}`)), 1500))
      },
      close: async () => undefined,
    }
    const e = await startExporter({ inventory: l.loaded.inventory, backend, listen: '127.0.0.1:0', httpIntervalMs: 200, sshIntervalMs: 300, httpTimeoutMs: 1000, sshTimeoutMs: 250, probeMinAgeMs: 0, staggerMs: 0 })
    cleanups.push(e.close)
    await new Promise((r) => setTimeout(r, 1400))
    const { text } = await get(`${e.url}/metrics`)
    expect(value(text, 'labctl_trivy_probe_success{host="trivy-0",probe="ssh"}')).toBe(0)
    expect(value(text, 'labctl_trivy_probe_skipped_total{host="trivy-0",probe="ssh"}')).toBeGreaterThanOrEqual(2)
    expect(sshCalls).toBe(1) // never two stuck runs at once
    expect(httpCalls).toBeGreaterThanOrEqual(5)
    expect(value(text, 'labctl_trivy_healthz_success{host="trivy-0"}')).toBe(1)
  })

  it('stops cleanly: no timer, socket or probe left', async () => {
    const l = await lab()
    const e = await exporter(l)
    await until('first run', () => (e.scheduler.state('edge', 'http')?.runs ?? 0) >= 1)
    const t = performance.now()
    await e.close()
    expect(performance.now() - t).toBeLessThan(3000)
    await expect(get(`${e.url}/metrics`, 1000)).rejects.toThrow()
    const runs = e.scheduler.state('edge', 'http')!.runs
    await new Promise((r) => setTimeout(r, 1500))
    expect(e.scheduler.state('edge', 'http')!.runs).toBe(runs)
  })
})

describe('exporter pieces', () => {
  it('parses --listen and refuses bad values with a usage error', () => {
    expect(parseListen('127.0.0.1:9934')).toEqual({ host: '127.0.0.1', port: 9934 })
    expect(parseListen(':9934')).toEqual({ host: '::', port: 9934 })
    expect(parseListen('[::1]:9934')).toEqual({ host: '::1', port: 9934 })
    for (const bad of ['9934', 'localhost:99999', 'a b:1', '[zz]:1', '']) expect(() => parseListen(bad), bad).toThrow(/--listen/)
  })

  it('renders SSH observations: unit state set, restarts counter, disk and cache, one db_age series per host', () => {
    const inv = { name: 'x', trivy: { version: '0.74.0' }, thresholds: { dbFreshnessHours: 48, diskWarnPercent: 80, diskCritPercent: 90, certWarnDays: 21, certCritDays: 7 } } as never
    const ssh: SshObservation = { unitState: 'failed', restarts: 4, diskUsedRatio: 0.93, cacheBytes: 123456, dbAgeSeconds: 100, checks: [{ check: 'disk', status: 'fail' }], journal: { panics: 1 }, errors: [] }
    const http: HttpObservation = { db: { present: true, updatedAtSeconds: 1_000_000 }, errors: [] }
    const base = { ok: true, errors: [], runs: 1, failures: 0, skipped: 0, durationMs: 12, finishedAt: 1_000_500_000 }
    const text = renderMetrics({
      inventory: inv,
      now: 1_000_500_000,
      states: [
        { ...base, target: 'trivy-0', kind: 'ssh', last: ssh },
        { ...base, target: 'trivy-0', kind: 'http', last: http },
        { ...base, target: 'trivy-1', kind: 'ssh', last: { ...ssh, unitState: 'weird' } },
      ],
    })
    expect(value(text, 'labctl_trivy_unit_state{host="trivy-0",state="failed"}')).toBe(1)
    expect(value(text, 'labctl_trivy_unit_state{host="trivy-0",state="active"}')).toBe(0)
    expect(value(text, 'labctl_trivy_unit_state{host="trivy-1",state="unknown"}')).toBe(1)
    expect(value(text, 'labctl_trivy_service_restarts_total{host="trivy-0"}')).toBe(4)
    expect(value(text, 'labctl_trivy_disk_used_ratio{host="trivy-0"}')).toBe(0.93)
    expect(value(text, 'labctl_trivy_cache_bytes{host="trivy-0"}')).toBe(123456)
    expect(value(text, 'labctl_trivy_check_status{host="trivy-0",check="disk"}')).toBe(2)
    expect(value(text, 'labctl_trivy_journal_lines{host="trivy-0",kind="panics"}')).toBe(1)
    // /version's UpdatedAt wins over metadata.json for trivy-0; trivy-1 has only the SSH one.
    expect(text.split('\n').filter((x) => x.startsWith('labctl_trivy_db_age_seconds{host="trivy-0"}'))).toEqual(['labctl_trivy_db_age_seconds{host="trivy-0"} 500'])
    expect(value(text, 'labctl_trivy_db_age_seconds{host="trivy-1"}')).toBe(100)
    expect(value(text, 'labctl_trivy_disk_crit_ratio')).toBe(0.9)
  })
})
