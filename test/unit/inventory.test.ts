import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { InventoryError, parseInventory, resolveInventoryPath, selectHosts } from '../../src/inventory/load.js'
import { ROOT } from '../helpers.js'

const example = readFileSync(join(ROOT, 'examples', 'comptech-lab.yaml'), 'utf8')

function problemsOf(text: string): InventoryError {
  try {
    parseInventory(text, 'lab.yaml')
  } catch (err) {
    if (err instanceof InventoryError) return err
    throw err
  }
  throw new Error('expected the inventory to be rejected')
}

describe('inventory', () => {
  it('accepts the example that mirrors the seed lab and applies defaults', () => {
    const inv = parseInventory(example, 'example.yaml')
    expect(inv.trivy.hosts[0]?.fqdn).toBe('trivy-0.sub.comptech-lab.com')
    expect(inv.trivy.tokenHeader).toBe('Trivy-Token')
    expect(inv.thresholds.dbFreshnessHours).toBe(48)
    const minimal = parseInventory(
      'name: x\ndns: {servers: [10.0.0.53]}\ntrivy:\n  version: 0.74.0\n  publicUrl: https://t.example\n  hosts: [{name: trivy-0, fqdn: trivy-0.example}]\n',
      'm.yaml',
    )
    expect(minimal.trivy.cacheDir).toBe('/var/lib/trivy')
    // ssh.user/port stay unset (~/.ssh/config may supply them; 22/root are applied in src/ssh/target.ts).
    expect(minimal.trivy.hosts[0]?.ssh.port).toBeUndefined()
    expect(minimal.trivy.hosts[0]?.ssh.connectTimeoutMs).toBe(10_000)
    expect(minimal.secrets.dir).toBe('secrets/trivy-vm')
  })

  it('names file, line and key for an unknown key', () => {
    const text = example.replace('  timeoutMs: 2000\n', '  timeoutMs: 2000\n  bogus: 1\n')
    const err = problemsOf(text)
    const line = text.split('\n').indexOf('  bogus: 1') + 1
    expect(err.problems[0]).toMatchObject({ file: 'lab.yaml', line, column: 3, key: 'dns.bogus', message: 'unknown key' })
    expect(err.exitCode).toBe(2)
  })

  it('names file, line and key for a wrong type and a missing key', () => {
    const text = example.replace('diskWarnPercent: 80', 'diskWarnPercent: lots').replace('  version: 0.74.0\n', '')
    const err = problemsOf(text)
    const keys = err.problems.map((p) => p.key)
    expect(keys).toContain('thresholds.diskWarnPercent')
    expect(keys).toContain('trivy.version')
    const wrong = err.problems.find((p) => p.key === 'thresholds.diskWarnPercent')!
    expect(wrong.line).toBe(text.split('\n').findIndex((l) => l.includes('diskWarnPercent')) + 1)
    expect(wrong.message).toMatch(/expected number/)
  })

  it('reports YAML syntax errors with a line', () => {
    const err = problemsOf('name: x\ndns:\n  servers: [1.2.3.4\ntrivy: {}\n')
    expect(err.problems[0]!.message).toMatch(/YAML syntax/)
    expect(err.problems[0]!.line).toBeGreaterThan(1)
  })

  it('refuses hostile host names and URLs', () => {
    const err = problemsOf(example.replace('fqdn: trivy-0.sub.comptech-lab.com', 'fqdn: "trivy-0;rm -rf /"'))
    expect(err.problems[0]).toMatchObject({ key: 'trivy.hosts[0].fqdn' })
    const err2 = problemsOf(example.replace('publicUrl: https://trivy.apps.sub.comptech-lab.com', 'publicUrl: "ftp://x"'))
    expect(err2.problems[0]!.key).toBe('trivy.publicUrl')
  })

  it('chooses the file from --config, LABCTL_CONFIG, --lab, then the XDG default', () => {
    const env = { HOME: '/home/op', XDG_CONFIG_HOME: '/xdg' }
    expect(resolveInventoryPath({ config: '/a.yaml', lab: 'x', env }).path).toBe('/a.yaml')
    expect(resolveInventoryPath({ lab: 'x', env: { ...env, LABCTL_CONFIG: '/b.yaml' } }).path).toBe('/b.yaml')
    expect(resolveInventoryPath({ lab: 'sandbox', env }).path).toBe('/xdg/labctl/labs/sandbox.yaml')
    expect(resolveInventoryPath({ env }).path).toBe('/xdg/labctl/lab.yaml')
    expect(() => resolveInventoryPath({ lab: '../etc/passwd', env })).toThrow(/not a lab name/)
  })

  it('selects one host or all', () => {
    const inv = parseInventory(example, 'e.yaml')
    expect(selectHosts(inv).map((h) => h.name)).toEqual(['trivy-0'])
    expect(selectHosts(inv, 'trivy-0')).toHaveLength(1)
    expect(() => selectHosts(inv, 'trivy-9')).toThrow(/no scanner host "trivy-9"/)
  })
})
