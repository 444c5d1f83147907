import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { parse, stringify } from 'yaml'
import { afterEach, describe, expect, inject, it } from 'vitest'
import { freePorts } from '../../src/sandbox/proc.js'
import { labctl, parseJson } from '../helpers.js'

type Check = { check: string; name: string; host: string; status: string; detail: string; fix?: string }
const sb = inject('sandbox')
const tmp = mkdtempSync(join(tmpdir(), 'labctl-remote-'))
const sshdLog = join(sb.dir, 'logs', 'sshd.log')

/** A copy of the sandbox inventory with some keys changed. */
function inventoryWith(name: string, edit: (inv: Record<string, any>) => void): string {
  const inv = parse(readFileSync(sb.inventory, 'utf8'))
  edit(inv)
  const file = join(tmp, `${name}.yaml`)
  writeFileSync(file, stringify(inv))
  return file
}
const host0 = (inv: Record<string, any>) => inv.trivy.hosts[0]
const logins = () => (existsSync(sshdLog) ? readFileSync(sshdLog, 'utf8').split('\n').filter((l) => l.includes('Accepted publickey')).length : 0)

describe('trivy status / check / logs / exec over SSH', () => {
  afterEach(async () => {
    const r = await labctl(['sandbox', 'heal'], { timeoutMs: 60_000 })
    expect(r.exitCode, r.stderr).toBe(0)
  })

  it('status: unit, PID, listener, installed vs pinned, running version — over one SSH handshake', async () => {
    const before = logins()
    const r = await labctl(['trivy', 'status', '--lab', 'sandbox', '--json'])
    expect(r.exitCode, r.stderr).toBe(0)
    const s = parseJson<{ ok: boolean; hosts: any[] }>(r.stdout)
    expect(s.hosts[0]).toMatchObject({ host: 'trivy-0', ok: true, installed: '0.74.0', pinned: '0.74.0', versionMatchesPin: true, unit: { active: 'active', sub: 'running', enabled: 'enabled' } })
    expect(s.hosts[0].unit.mainPid).toBeGreaterThan(0)
    expect(s.hosts[0].listening).toHaveLength(1)
    expect(s.hosts[0].server.version).toBe('0.74.0')
    expect(logins() - before).toBe(1)
  })

  it('check: disk, DB freshness, DB file, journal — JSON and Prometheus textfile, one handshake', async () => {
    const prom = join(tmp, 'trivy.prom')
    const before = logins()
    // Only this test's window of the journal: earlier drills in the run may have logged errors on purpose.
    const since = new Date(Date.now() - 5000).toISOString().slice(0, 19).replace('T', ' ')
    const r = await labctl(['trivy', 'check', '--lab', 'sandbox', '--json', '--prometheus', prom, '--since', since])
    expect(r.exitCode, r.stdout + r.stderr).toBe(0)
    expect(logins() - before).toBe(1)
    const res = parseJson<{ ok: boolean; checks: Check[] }>(r.stdout)
    expect(res.checks.map((c) => [c.check, c.status])).toEqual([
      ['disk', 'pass'],
      ['db-freshness', 'pass'],
      ['db-file', 'pass'],
      ['journal', 'pass'],
      ['firewall', 'pass'],
    ])
    const text = readFileSync(prom, 'utf8')
    expect(text).toMatch(/^labctl_trivy_db_age_seconds\{host="trivy-0"\} \d+$/m)
    expect(text).toMatch(/^labctl_trivy_disk_used_ratio\{host="trivy-0"\} 0\.\d+$/m)
    expect(text).toMatch(/^labctl_trivy_check_status\{host="trivy-0",check="db-file"\} 0$/m)
    for (const line of text.trim().split('\n')) expect(line).toMatch(/^(# (HELP|TYPE) \w+ .+|\w+(\{[^}]*\})? -?[\d.e+-]+)$/)
  })

  it('check: disk above the thresholds fails with the numbers', async () => {
    const file = inventoryWith('disk', (inv) => (inv.thresholds = { ...inv.thresholds, diskWarnPercent: 1, diskCritPercent: 2 }))
    const r = await labctl(['trivy', 'check', '--config', file, '--json'])
    expect(r.exitCode).toBe(3)
    const disk = parseJson<{ checks: Check[] }>(r.stdout).checks.find((c) => c.check === 'disk')!
    expect(disk.status).toBe('fail')
    expect(disk.detail).toMatch(/\/var\/lib\/trivy on \/var: [\d.]+% used .*above 2%/)
    expect(disk.fix).toMatch(/clean --scan-cache/)
  })

  it('check: a stale DB and a DB overwritten with garbage are named as such', async () => {
    let r = await labctl(['sandbox', 'break', 'db-stale'])
    expect(r.exitCode, r.stderr).toBe(0)
    r = await labctl(['trivy', 'check', '--lab', 'sandbox', '--json'])
    expect(r.exitCode).toBe(3)
    let checks = parseJson<{ checks: Check[] }>(r.stdout).checks
    expect(checks.find((c) => c.check === 'db-freshness')).toMatchObject({ status: 'fail', detail: expect.stringMatching(/DB is stale: .*72\.\d h ago.*SLA 48 h/) })
    r = await labctl(['sandbox', 'break', 'db-corrupt'])
    r = await labctl(['trivy', 'check', '--lab', 'sandbox', '--json'])
    expect(r.exitCode).toBe(3)
    checks = parseJson<{ checks: Check[] }>(r.stdout).checks
    expect(checks.find((c) => c.check === 'db-file')).toMatchObject({ status: 'fail', detail: expect.stringMatching(/not a bbolt database \(bad magic\): corrupted/), fix: expect.stringMatching(/reset-db/) })
  })

  it('reset-db brings a corrupted server back to a passing validate, and reports the downtime', async () => {
    let r = await labctl(['sandbox', 'break', 'db-corrupt'])
    expect(r.exitCode, r.stderr).toBe(0)
    r = await labctl(['trivy', 'validate', '--lab', 'sandbox', '--json', '--timeout', '3000'])
    expect(r.exitCode).toBe(3)
    const noPrompt = await labctl(['trivy', 'reset-db', '--lab', 'sandbox', '--host', 'trivy-0'])
    expect(noPrompt.exitCode).toBe(2)
    expect(noPrompt.stderr).toMatch(/confirmation needed/)
    r = await labctl(['trivy', 'reset-db', '--lab', 'sandbox', '--host', 'trivy-0', '--yes', '--json', '--wait', '60'], { timeoutMs: 120_000 })
    expect(r.exitCode, r.stdout + r.stderr).toBe(0)
    const res = parseJson<{ results: Array<{ downtimeMs: number; movedTo: string; steps: Array<{ step: string }> }> }>(r.stdout)
    expect(res.results[0]!.steps.map((s) => s.step)).toEqual(['stop service', 'move DB aside', 'download DB', 'start service', 'wait for fresh DB', 'canary scan'])
    expect(res.results[0]!.movedTo).toMatch(/\/var\/lib\/trivy\/db\.broken-/)
    expect(res.results[0]!.downtimeMs).toBeGreaterThan(0)
    r = await labctl(['trivy', 'validate', '--lab', 'sandbox', '--json'])
    expect(r.exitCode, r.stdout).toBe(0)
    // Safe to re-run.
    r = await labctl(['trivy', 'reset-db', '--lab', 'sandbox', '--yes', '--json', '--wait', '60'], { timeoutMs: 120_000 })
    expect(r.exitCode, r.stderr).toBe(0)
  })

  it('logs and exec run on the host; arguments with shell metacharacters are passed literally', async () => {
    const logs = await labctl(['trivy', 'logs', '--lab', 'sandbox', '-n', '5'])
    expect(logs.exitCode, logs.stderr).toBe(0)
    expect(logs.stdout).toMatch(/Started trivy-server\.service|Listening/)
    const ver = await labctl(['trivy', 'exec', '--lab', 'sandbox', '--json', '--', '--version'])
    expect(ver.exitCode, ver.stderr).toBe(0)
    expect(parseJson<{ hosts: Array<{ stdout: string }> }>(ver.stdout).hosts[0]!.stdout).toMatch(/Version: 0\.74\.0/)
    const marker = join(tmp, 'pwned')
    const evil = await labctl(['trivy', 'exec', '--lab', 'sandbox', '--', 'version', `$(touch ${marker})`, `; touch ${marker}`, `\`touch ${marker}\``])
    expect(evil.exitCode).toBe(3)
    expect(existsSync(marker)).toBe(false)
    const file = inventoryWith('evil-path', (inv) => (inv.trivy.cacheDir = `/var/lib/trivy; touch ${marker}`))
    const r = await labctl(['trivy', 'check', '--config', file, '--json'])
    expect(r.exitCode).toBe(3)
    expect(existsSync(marker)).toBe(false)
  })

  it('connection refused, authentication refused, host key changed, sudo needing a password: one line each, exit 1', async () => {
    const [closed] = await freePorts(1)
    const cases: Array<[string, (inv: Record<string, any>) => void, RegExp]> = [
      ['refused', (inv) => (host0(inv).ssh.port = closed), /refused/i],
      ['auth', (inv) => (host0(inv).ssh.identityFile = join(tmp, 'wrong_key')), /authentication|rejected|refused|key/i],
      ['hostkey', (inv) => (host0(inv).ssh.knownHostsFile = join(tmp, 'known_hosts_changed')), /host key.*(changed|CHANGED)|does not match/i],
      ['sudo', (inv) => (host0(inv).ssh.user = 'labops-pw'), /password/i],
    ]
    await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(tmp, 'wrong_key')])
    await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(tmp, 'other_host_key')])
    const known = readFileSync(host0(parse(readFileSync(sb.inventory, 'utf8'))).ssh.knownHostsFile, 'utf8').split(' ')
    const otherKey = readFileSync(join(tmp, 'other_host_key.pub'), 'utf8').split(' ')
    writeFileSync(join(tmp, 'known_hosts_changed'), `${known[0]} ${otherKey[0]} ${otherKey[1]}\n`)
    for (const [name, edit, pattern] of cases) {
      const r = await labctl(['trivy', 'check', '--config', inventoryWith(name, edit)])
      expect(r.exitCode, `${name}: ${r.stderr}`).toBe(1)
      const lines = r.stderr.trim().split('\n')
      expect(lines[0], name).toMatch(/^labctl: error: /)
      expect(lines[0], name).toMatch(pattern)
      expect(lines[1], name).toMatch(/^ {2}next: /)
      expect(r.stderr, name).not.toMatch(/\bat .+\.js:\d+/)
    }
  })

  it('a command that runs past its timeout is stopped with a clear error', async () => {
    const [port] = await freePorts(1)
    const r = await labctl(['trivy', 'exec', '--lab', 'sandbox', '--timeout', '1500', '--', 'server', '--listen', `127.0.0.1:${port}`, '--skip-db-update'])
    expect(r.exitCode).toBe(1)
    expect(r.stderr).toMatch(/did not finish|timed out|timeout/i)
  })
})
