import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { XMLParser } from 'fast-xml-parser'
import { parse, stringify } from 'yaml'
import { afterEach, describe, expect, inject, it } from 'vitest'
import { trivyBinary } from '../../src/sandbox/prereqs.js'
import { labctl, parseJson } from '../helpers.js'

type Check = { check: string; name: string; host: string; status: string; detail: string; fix?: string; durationMs: number }
type Result = { ok: boolean; summary: { pass: number; fail: number }; checks: Check[] }

const sb = inject('sandbox')
const tmp = mkdtempSync(join(tmpdir(), 'labctl-validate-'))
const token = () => readFileSync(join(sb.dir, 'secrets', 'trivy-vm', 'token'), 'utf8').trim()
/** The sandbox inventory with a change, written to a file of its own (the addresses come from the sandbox, whatever they are). */
type Inv = { dns: { servers: string[] }; trivy: { plainHttpNetworks?: string[]; hosts: Array<{ address: string; debugUrl: string }> } }
function variant(name: string, edit: (inv: Inv) => void): string {
  const inv = parse(readFileSync(sb.inventory, 'utf8')) as Inv
  edit(inv)
  const file = join(tmp, `${name}.yaml`)
  writeFileSync(file, stringify(inv))
  return file
}

async function validate(args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; result: Result; stdout: string; stderr: string }> {
  const defaults = args.includes('--scan-timeout') ? ['--timeout', '3000'] : ['--timeout', '3000', '--scan-timeout', '8000']
  const r = await labctl(['trivy', 'validate', '--lab', 'sandbox', '--json', ...defaults, ...args], { env })
  return { code: r.exitCode ?? -1, result: parseJson<Result>(r.stdout), stdout: String(r.stdout), stderr: String(r.stderr) }
}
const failed = (r: Result) => r.checks.filter((c) => c.status === 'fail')
const byName = (r: Result, name: string) => r.checks.find((c) => c.name === name)

async function breakIt(fault: string): Promise<void> {
  const r = await labctl(['sandbox', 'break', fault])
  expect(r.exitCode, r.stderr).toBe(0)
}

describe('trivy validate', () => {
  afterEach(async () => {
    const r = await labctl(['sandbox', 'heal'], { timeoutMs: 60_000 })
    expect(r.exitCode, r.stderr).toBe(0)
  })

  it('passes every check on a healthy lab, with JSON and JUnit that parse', async () => {
    const junit = join(tmp, 'validate.xml')
    const { code, result, stdout } = await validate(['--junit', junit])
    expect(failed(result), JSON.stringify(failed(result))).toEqual([])
    expect(code).toBe(0)
    expect(result.ok).toBe(true)
    const families = new Set(result.checks.map((c) => c.check))
    expect([...families].sort()).toEqual(['auth', 'db', 'dns', 'edge', 'healthz', 'scan', 'tls', 'version'])
    for (const c of result.checks) {
      expect(c).toMatchObject({ name: expect.any(String), host: expect.any(String), status: 'pass', detail: expect.any(String), durationMs: expect.any(Number) })
    }
    expect(byName(result, 'scan canary via HAProxy')!.detail).toMatch(/CVE-2020-1967/)
    expect(byName(result, 'auth via HAProxy')!.detail).toBe('no token → 401, wrong token → 401')
    expect(stdout).not.toContain(token())
    const xml = new XMLParser({ ignoreAttributes: false }).parse(readFileSync(junit, 'utf8'))
    const suite = xml.testsuites.testsuite
    expect(Number(suite['@_tests'])).toBe(result.checks.length)
    expect(Number(suite['@_failures'])).toBe(0)
    expect(suite.testcase).toHaveLength(result.checks.length)
  })

  it('Trivy stopped: HAProxy 503 is reported as "backend down", exit 3', async () => {
    await breakIt('service-stopped')
    const { code, result } = await validate()
    expect(code).toBe(3)
    expect(byName(result, 'healthz via HAProxy')).toMatchObject({ status: 'fail', detail: expect.stringMatching(/backend down: HAProxy answered 503/) })
    expect(byName(result, 'healthz via HAProxy')!.fix).toMatch(/labctl trivy status/)
    expect(byName(result, 'healthz direct')).toMatchObject({ status: 'fail', detail: expect.stringMatching(/^connection refused \(nothing listens on the port: service down\)$/) })
    expect(result.checks.find((c) => c.check === 'tls')).toMatchObject({ status: 'pass' })
  })

  it('wrong token on the server: the canary says the token is rejected (401)', async () => {
    await breakIt('wrong-token')
    const { code, result } = await validate()
    expect(code).toBe(3)
    const scans = result.checks.filter((c) => c.check === 'scan')
    expect(scans.length).toBeGreaterThan(0)
    for (const s of scans) {
      expect(s.status).toBe('fail')
      expect(s.detail).toMatch(/token rejected \(401\)/)
      expect(s.fix).toMatch(/runbook run scan-401/)
    }
    expect(failed(result).every((c) => c.check === 'scan')).toBe(true)
  })

  it('server without a DB: "server has no vulnerability DB"', async () => {
    await breakIt('no-db')
    const { code, result } = await validate()
    expect(code).toBe(3)
    expect(failed(result).map((c) => c.check)).toEqual(['db'])
    expect(failed(result)[0]!.detail).toMatch(/server has no vulnerability DB/)
    expect(failed(result)[0]!.fix).toMatch(/reset-db/)
  })

  it('DB older than the SLA: stale, with its age', async () => {
    await breakIt('db-stale')
    const { code, result } = await validate()
    expect(code).toBe(3)
    expect(failed(result).map((c) => c.check)).toEqual(['db'])
    expect(failed(result)[0]!.detail).toMatch(/DB is stale: UpdatedAt .*\(72\.\d h ago\).*SLA 48 h/)
  })

  it('server version different from the pin', async () => {
    const inv = readFileSync(sb.inventory, 'utf8').replace('version: 0.74.0', 'version: 0.73.0')
    const file = join(tmp, 'pin.yaml')
    writeFileSync(file, inv)
    const r = await labctl(['trivy', 'validate', '--config', file, '--json', '--only', 'version'])
    expect(r.exitCode).toBe(3)
    const res = parseJson<Result>(r.stdout)
    expect(res.checks).toHaveLength(1)
    expect(res.checks[0]).toMatchObject({ status: 'fail', detail: 'server runs Trivy 0.74.0, the inventory pins 0.73.0' })
  })

  it('DNS name removed: NXDOMAIN for that name', async () => {
    await breakIt('dns-removed')
    const { code, result } = await validate(['--only', 'dns'])
    expect(code).toBe(3)
    expect(failed(result)).toHaveLength(1)
    expect(failed(result)[0]).toMatchObject({ name: 'dns trivy.apps.sandbox.lab.test', detail: 'trivy.apps.sandbox.lab.test does not exist (NXDOMAIN)' })
    expect(failed(result)[0]!.fix).toMatch(/dns-record-wrong/)
  })

  it('DNS server not answering: a timeout, not NXDOMAIN', async () => {
    // The lab's own DNS machine, on a port where nothing answers (loopback, or the dns node of the lab network).
    const file = variant('dns-timeout', (inv) => {
      inv.dns.servers = [inv.dns.servers[0]!.replace(/:\d+$/, ':9')]
    })
    expect(readFileSync(file, 'utf8')).toMatch(/servers:\n\s+- [\d.]+:9\n/)
    const r = await labctl(['trivy', 'validate', '--config', file, '--json', '--only', 'dns'])
    expect(r.exitCode).toBe(3)
    const res = parseJson<Result>(r.stdout)
    for (const c of res.checks) expect(c.detail).toMatch(/DNS timeout|refused|failed/)
  })

  it('certificate expired, or for another name', async () => {
    await breakIt('cert-expired')
    let { result } = await validate(['--only', 'tls'])
    expect(result.checks[0]).toMatchObject({ status: 'fail', detail: expect.stringMatching(/certificate for \*\.apps\.sandbox\.lab\.test expired on \d{4}-\d\d-\d\d/) })
    expect(result.checks[0]!.fix).toMatch(/renew/)
    await breakIt('cert-wrong-name')
    ;({ result } = await validate(['--only', 'tls']))
    expect(result.checks[0]).toMatchObject({ status: 'fail', detail: expect.stringMatching(/does not cover trivy\.apps\.sandbox\.lab\.test \(it is for DNS:other\.apps\.example\.test\)/) })
  })

  it('certificate near expiry is a failure below the critical threshold', async () => {
    await breakIt('cert-expiring')
    const { code, result } = await validate(['--only', 'tls'])
    expect(code).toBe(3)
    expect(result.checks[0]!.detail).toMatch(/expires .* \((2|3) days\): below 7 days/)
  })

  it('a hung server times out instead of hanging validate', async () => {
    await breakIt('hung')
    const started = Date.now()
    const { code, result } = await validate(['--only', 'healthz,version'])
    expect(code).toBe(3)
    expect(Date.now() - started).toBeLessThan(15_000)
    expect(byName(result, 'healthz direct')!.detail).toMatch(/timed out after 3000 ms/)
  })

  it('scans a real image with the local trivy client, token via env, gated on severity', async () => {
    const env = { LABCTL_TRIVY_BIN: trivyBinary() }
    const gated = await validate(['--only', 'image', '--image', sb.image, '--scan-timeout', '60000'], env)
    expect(gated.code, gated.stdout + gated.stderr).toBe(3)
    expect(gated.result.checks[0]).toMatchObject({ check: 'image', status: 'fail', detail: expect.stringMatching(/CRITICAL 0, HIGH 1, MEDIUM 1.*gate HIGH,CRITICAL has 1 finding/) })
    const critical = await validate(['--only', 'image', '--image', sb.image, '--gate', 'CRITICAL', '--scan-timeout', '60000'], env)
    expect(critical.code).toBe(0)
    expect(critical.result.checks[0]!.detail).toMatch(/gate CRITICAL clean/)
    expect(gated.stdout + gated.stderr + critical.stdout).not.toContain(token())
  })

  it('takes the token from --token-file - (stdin) and TRIVY_TOKEN; a wrong one fails the canary', async () => {
    const viaStdin = await labctl(['trivy', 'validate', '--lab', 'sandbox', '--json', '--only', 'scan', '--token-file', '-'], { input: `${token()}\n` })
    expect(viaStdin.exitCode, viaStdin.stdout).toBe(0)
    const wrong = await labctl(['trivy', 'validate', '--lab', 'sandbox', '--json', '--only', 'scan'], { env: { TRIVY_TOKEN: 'not-the-token' } })
    expect(wrong.exitCode).toBe(3)
    expect(wrong.stdout).not.toContain('not-the-token')
  })

  it('refuses to send the token over plain HTTP to a non-loopback host', async () => {
    const inv = readFileSync(sb.inventory, 'utf8').replace(/debugUrl: http:\/\/[^\n]+/, 'debugUrl: http://192.0.2.10:4954')
    const file = join(tmp, 'insecure.yaml')
    writeFileSync(file, inv)
    const r = await labctl(['trivy', 'validate', '--config', file, '--json', '--only', 'scan'])
    const res = parseJson<Result>(r.stdout)
    expect(byName(res, 'scan canary direct')).toMatchObject({ status: 'skip', detail: expect.stringMatching(/refusing to send the token over plain HTTP to 192\.0\.2\.10:4954/) })
    expect(byName(res, 'scan canary via HAProxy')!.status).toBe('pass')
  })

  it('the direct canary: plain HTTP on loopback or inside trivy.plainHttpNetworks (the lab /24), else skipped', async () => {
    const inv = parse(readFileSync(sb.inventory, 'utf8')) as Inv
    expect(new URL(inv.trivy.hosts[0]!.debugUrl).protocol).toBe('http:')
    const offLoopback = inv.trivy.hosts[0]!.address !== '127.0.0.1'
    // The lab network's inventory opts in to plain HTTP on its own /24 only.
    if (offLoopback) expect(inv.trivy.plainHttpNetworks).toEqual([expect.stringMatching(/^198\.1[89]\.\d+\.0\/24$/)])
    const withIt = await validate(['--only', 'scan'])
    expect(byName(withIt.result, 'scan canary direct')).toMatchObject({ status: 'pass', detail: expect.stringMatching(/token accepted/) })
    // Without the opt-in the token does not go over plain HTTP off loopback; the edge (HTTPS) still gets it.
    const file = variant('no-plain-http', (i) => {
      delete i.trivy.plainHttpNetworks
    })
    const r = await labctl(['trivy', 'validate', '--config', file, '--json', '--only', 'scan', '--scan-timeout', '8000'])
    const res = parseJson<Result>(r.stdout)
    if (offLoopback) {
      expect(byName(res, 'scan canary direct')).toMatchObject({ status: 'skip', detail: expect.stringMatching(/refusing to send the token over plain HTTP to .*:4954 \(not loopback, and the inventory names no trivy\.plainHttpNetworks\)/) })
    } else {
      expect(byName(res, 'scan canary direct')!.status).toBe('pass')
    }
    expect(byName(res, 'scan canary via HAProxy')!.status).toBe('pass')
    expect(r.stdout).not.toContain(token())
  })

  it('--only/--skip select checks; an unknown check name is a usage error', async () => {
    const { result } = await validate(['--only', 'dns,tls', '--skip', 'tls'])
    expect(new Set(result.checks.map((c) => c.check))).toEqual(new Set(['dns']))
    const bad = await labctl(['trivy', 'validate', '--lab', 'sandbox', '--only', 'dsn'])
    expect(bad.exitCode).toBe(2)
    expect(bad.stderr).toMatch(/unknown check "dsn"/)
  })
})
