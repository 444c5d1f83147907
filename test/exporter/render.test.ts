// What the exporter work renders for other programs: HAProxy's metrics frontend (checked by the real
// haproxy -c) and the exporter's systemd unit (install's hardening, own user, no secret).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { describe, expect, it } from 'vitest'
import { parseInventory } from '../../src/inventory/load.js'
import { renderExporterUnit } from '../../src/exporter/systemd.js'
import { hardeningDirectives, renderHaproxy, renderUnit } from '../../src/trivy/install-render.js'

const inv = parseInventory(
  `
name: render-test
dns: { servers: ["127.0.0.1"] }
trivy:
  version: 0.74.0
  publicUrl: https://trivy.apps.render.test
  hosts: [{ name: trivy-0, fqdn: trivy-0.render.test, address: 127.0.0.1 }]
`,
  'render.yaml',
)

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
