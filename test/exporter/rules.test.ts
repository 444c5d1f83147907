// The alert rules (monitoring/labctl-trivy.rules.yml) through Prometheus's own tool: `promtool check rules`
// and the rule unit tests. promtool comes from Debian's `prometheus` package (scripts/setup.sh installs it).
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import { describe, expect, it } from 'vitest'
import { METRICS } from '../../src/trivy/metrics.js'
import { ROOT } from '../helpers.js'
import { which } from '../../src/sandbox/prereqs.js'

const RULES = join(ROOT, 'monitoring', 'labctl-trivy.rules.yml')
const TESTS = join(ROOT, 'monitoring', 'labctl-trivy.rules.test.yml')

describe('alert rules', () => {
  it('have promtool to test them with (Debian package prometheus, installed by scripts/setup.sh)', () => {
    expect(which('promtool'), 'promtool is not on PATH: run ./scripts/setup.sh (apt-get install prometheus)').toBeTruthy()
  })

  it('pass promtool check rules', async () => {
    const r = await execa('promtool', ['check', 'rules', RULES], { reject: false, timeout: 30_000 })
    expect(r.stdout + r.stderr).toMatch(/SUCCESS: \d+ rules found/)
    expect(r.exitCode).toBe(0)
  })

  it('pass their promtool unit tests (each alert fires, and stays quiet when it should)', async () => {
    const r = await execa('promtool', ['test', 'rules', TESTS], { reject: false, timeout: 60_000 })
    expect(r.stdout + r.stderr, r.stdout + r.stderr).toMatch(/SUCCESS/)
    expect(r.exitCode).toBe(0)
  })

  it('use only metric names the exporter writes, and test every alert', () => {
    const rules = readFileSync(RULES, 'utf8')
    const known = new Set(Object.values(METRICS).map((m) => m.name))
    const used = new Set(rules.match(/\blabctl_trivy_[a-z_]+/g) ?? [])
    expect(used.size).toBeGreaterThan(10)
    for (const name of used) expect(known.has(name), `${name} is not in src/trivy/metrics.ts`).toBe(true)
    const alerts = [...rules.matchAll(/^\s*- alert: (\w+)$/gm)].map((m) => m[1]!)
    const tests = readFileSync(TESTS, 'utf8')
    for (const a of alerts) expect(tests, `no promtool test fires ${a}`).toMatch(new RegExp(`alertname: ${a}\\n\\s+exp_alerts:\\n\\s+- exp_labels`))
  })
})
