// What the exporter work renders for other programs: HAProxy's metrics frontend (checked by the real
// haproxy -c) and the exporter's systemd unit (install's hardening, own user, no secret).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer, request as httpRequest } from 'node:http'
import type { AddressInfo } from 'node:net'
import { execa } from 'execa'
import { describe, expect, it } from 'vitest'
import { parseInventory } from '../../src/inventory/load.js'
import { renderExporterUnit } from '../../src/exporter/systemd.js'
import { HAPROXY_RULES_BEGIN, HAPROXY_RULES_END, hardeningDirectives, renderHaproxy, renderUnit } from '../../src/trivy/install-render.js'
import { freePorts } from '../../src/sandbox/proc.js'

/** A one-host inventory; the host's Trivy listens on `listen`. */
const inventory = (listen = '0.0.0.0:4954') =>
  parseInventory(
    `
name: render-test
dns: { servers: ["127.0.0.1"] }
trivy:
  version: 0.74.0
  publicUrl: https://trivy.apps.render.test
  hosts: [{ name: trivy-0, fqdn: trivy-0.render.test, address: 127.0.0.1, listen: "${listen}" }]
`,
    'render.yaml',
  )
const inv = inventory()

/** The rendered edge part (backend trivy-vm-be + metrics frontend) in a real HAProxy, the Trivy host on `port`. */
async function withEdge<T>(port: number, fn: (scan: () => Promise<number>, scrape: () => Promise<string>) => Promise<T>): Promise<T> {
  const [fe, metrics] = (await freePorts(2)) as [number, number]
  const live = inventory(`127.0.0.1:${port}`)
  const text = renderHaproxy(live, live.trivy.hosts, { metricsBind: `127.0.0.1:${metrics}` })
  const lines = text.split('\n')
  const rules = lines.slice(lines.findIndex((l) => l.startsWith(HAPROXY_RULES_BEGIN)) + 1, lines.indexOf(HAPROXY_RULES_END)).map((l) => l.replace(/^#\s*/, '  '))
  const dir = mkdtempSync(join(tmpdir(), 'labctl-haproxy-live-'))
  writeFileSync(join(dir, 'edge.cfg'), `defaults\n  mode http\n  timeout connect 500ms\n  timeout client 5s\n  timeout server 5s\n  retries 0\nfrontend fe\n  bind 127.0.0.1:${fe}\n${rules.join('\n')}\n`)
  writeFileSync(join(dir, 'trivy.cfg'), text)
  const haproxy = (await execa('sh', ['-c', 'command -v haproxy || echo /usr/sbin/haproxy'])).stdout.trim()
  const child = execa(haproxy, ['-db', '-f', join(dir, 'edge.cfg'), '-f', join(dir, 'trivy.cfg')], { reject: false, stdin: 'ignore' })
  const scrape = async (): Promise<string> => (await fetch(`http://127.0.0.1:${metrics}/metrics`, { signal: AbortSignal.timeout(2000) })).text()
  // node:http, not fetch: fetch does not let the caller set Host, and the edge routes by Host.
  const scan = (): Promise<number> =>
    new Promise((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: fe, method: 'POST', path: '/twirp/trivy.scanner.v1.Scanner/Scan', headers: { host: 'trivy.apps.render.test', 'content-type': 'application/json' }, timeout: 5000 }, (res) => {
        res.resume()
        res.on('end', () => resolve(res.statusCode ?? 0))
      })
      req.on('timeout', () => req.destroy(new Error('timed out')))
      req.on('error', reject)
      req.end('{}')
    })
  try {
    // Ready when the metrics answer and the first health check has set the server's state.
    const end = Date.now() + 10_000
    let ready = false
    while (!ready && Date.now() < end) {
      ready = await scrape().then((m) => /haproxy_server_check_status\{[^}]*state="(L7OK|L4CON)"\} 1/.test(m), () => false)
      if (!ready) await new Promise((r) => setTimeout(r, 100))
    }
    expect(ready, 'HAProxy started and checked the server').toBe(true)
    expect((await fetch(`http://127.0.0.1:${metrics}/other`, { signal: AbortSignal.timeout(2000) })).status).toBe(404)
    return await fn(scan, scrape)
  } finally {
    child.kill('SIGTERM')
    await Promise.race([child, new Promise((r) => setTimeout(r, 3000))])
    if (child.exitCode === null) child.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  }
}

describe('rendered configuration', () => {
  it('the edge config serves HAProxy\'s Prometheus exporter on /metrics, and haproxy accepts it', async () => {
    const text = renderHaproxy(inv, inv.trivy.hosts, { metricsBind: '127.0.0.1:18405' })
    expect(text).toMatch(/^frontend labctl-edge-metrics$/m)
    expect(text).toContain('http-request use-service prometheus-exporter if { path /metrics }')
    const dir = mkdtempSync(join(tmpdir(), 'labctl-haproxy-render-'))
    try {
      writeFileSync(join(dir, 'edge.cfg'), 'defaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n')
      writeFileSync(join(dir, 'trivy.cfg'), text)
      const haproxy = (await execa('sh', ['-c', 'command -v haproxy || echo /usr/sbin/haproxy'])).stdout.trim()
      const r = await execa(haproxy, ['-c', '-f', join(dir, 'edge.cfg'), '-f', join(dir, 'trivy.cfg')], { reject: false, timeout: 10_000 })
      expect(r.exitCode, r.stdout + r.stderr).toBe(0)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it("HAProxy's exporter counts Trivy's 5xx on trivy-vm-be and shows a backend with no server (the edge rules' series)", async () => {
    // A Trivy stand-in that is healthy for HAProxy's check but fails every scan with 500.
    const failing = createServer((req, res) => {
      res.writeHead(req.url === '/healthz' ? 200 : 500, { 'content-type': 'text/plain' })
      res.end(req.url === '/healthz' ? 'ok' : 'boom')
    })
    await new Promise<void>((r) => failing.listen(0, '127.0.0.1', r))
    const [dead] = (await freePorts(1)) as [number]
    try {
      const up = await withEdge((failing.address() as AddressInfo).port, async (scan, scrape) => {
        for (let i = 0; i < 10; i++) expect(await scan()).toBe(500)
        return scrape()
      })
      expect(up).toMatch(/^haproxy_backend_http_responses_total\{proxy="trivy-vm-be",code="5xx"\} 10$/m)
      expect(up).toMatch(/^haproxy_backend_active_servers\{proxy="trivy-vm-be"\} 1$/m)
      // Nothing listens behind the edge: HAProxy answers 503 itself, counted on the backend as well,
      // and the backend has no active server (TrivyEdgeBackendDown, which needs no traffic to fire).
      const down = await withEdge(dead, async (scan, scrape) => {
        for (let i = 0; i < 5; i++) expect(await scan()).toBe(503)
        return scrape()
      })
      expect(down).toMatch(/^haproxy_backend_http_responses_total\{proxy="trivy-vm-be",code="5xx"\} 5$/m)
      expect(down).toMatch(/^haproxy_backend_active_servers\{proxy="trivy-vm-be"\} 0$/m)
      expect(down).toMatch(/^haproxy_frontend_http_responses_total\{proxy="fe",code="5xx"\} 5$/m)
    } finally {
      await new Promise((r) => failing.close(r))
    }
  })

  it('the exporter unit runs under its own user with the same hardening as the Trivy unit', () => {
    const unit = renderExporterUnit({ inventory: inv, listen: '10.0.0.20:9934', args: ['--interval', '30'], user: 'labctl-exporter', labctlBin: '/usr/local/bin/labctl', configDir: '/etc/labctl/trivy-exporter' })
    expect(unit).toMatch(/^User=labctl-exporter$/m)
    expect(unit).toMatch(/^Group=labctl-exporter$/m)
    expect(unit).toMatch(/^ExecStart=\/usr\/local\/bin\/labctl trivy exporter --config \/etc\/labctl\/trivy-exporter\/lab.yaml --token-file \/etc\/labctl\/trivy-exporter\/token --listen 10.0.0.20:9934 --interval 30$/m)
    // The token file: owned by the exporter's user, mode 0400.
    expect(unit).toContain('install -o labctl-exporter -g labctl-exporter -m 0400 token /etc/labctl/trivy-exporter/token')
    const trivyUnit = renderUnit(inv)
    for (const d of hardeningDirectives([])) {
      expect(unit.split('\n'), d).toContain(d)
      expect(trivyUnit.split('\n'), d).toContain(d)
    }
    expect(unit).not.toMatch(/^User=root$/m)
    expect(unit).not.toMatch(/TRIVY_TOKEN=/)
    expect(() => renderExporterUnit({ inventory: inv, listen: ':9934', args: [], user: 'Bad User', labctlBin: '/x', configDir: '/etc/x' })).toThrow(/not a valid user name/)
    expect(() => renderExporterUnit({ inventory: inv, listen: ':9934', args: [], user: 'u', labctlBin: '/opt/lab ctl/$x', configDir: '/etc/x' })).toThrow(/cannot carry/)
  })
})
