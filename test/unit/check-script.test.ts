// trivy check's remote script, run by a local shell (no SSH, no sandbox) and judged by hostCheck.
import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseInventory } from '../../src/inventory/load.js'
import type { Remote, RunOptions, RunResult } from '../../src/ssh/index.js'
import { hostCheck } from '../../src/trivy/check.js'
import { FIREWALL_SCRIPT, firewallVerdict } from '../../src/trivy/firewall-check.js'

let dir: string
const commands: string[][] = []
/** A stand-in session: runs the argv here, as the current user (no sudo). */
const local = {
  async run(_host: unknown, argv: readonly string[], o: RunOptions = {}): Promise<RunResult> {
    commands.push([...argv])
    const r = await execa(argv[0]!, argv.slice(1), { reject: false, timeout: o.timeoutMs ?? 30_000 })
    return { code: r.exitCode ?? 1, stdout: r.stdout, stderr: r.stderr, command: argv.join(' ') }
  },
} as unknown as Remote

function lab(cacheDir: string) {
  const text = `name: x\ndns: {servers: ['127.0.0.1:1']}\ntrivy:\n  version: 0.74.0\n  publicUrl: https://127.0.0.2\n  allowlist: [127.0.0.3]\n  cacheDir: ${cacheDir}\n  hosts: [{name: trivy-0, fqdn: trivy-0.example}]\n`
  const inventory = parseInventory(text, 'lab.yaml')
  return { loaded: { inventory, path: 'lab.yaml', dir: '.' }, host: inventory.trivy.hosts[0]! }
}

/** A file that starts like a bbolt DB: its meta page magic 0xED0CDAED (little endian) at byte 16. */
function boltFile(path: string): void {
  const b = Buffer.alloc(4096)
  b.writeUInt32LE(0xed0cdaed, 16)
  writeFileSync(path, b)
}

const byName = (r: Awaited<ReturnType<typeof hostCheck>>) => Object.fromEntries(r.checks.map((c) => [c.check, c]))

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'labctl-check-script-'))
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('trivy check script', () => {
  it('reads disk, a fresh DB, a bbolt file and the journal in one command', async () => {
    const cache = join(dir, 'ok')
    mkdirSync(join(cache, 'db'), { recursive: true })
    writeFileSync(join(cache, 'db', 'metadata.json'), JSON.stringify({ Version: 2, UpdatedAt: new Date(Date.now() - 3600_000).toISOString(), NextUpdate: '2099-01-01T00:00:00Z' }))
    boltFile(join(cache, 'db', 'trivy.db'))
    commands.length = 0
    const r = await hostCheck({ ...lab(cache), remote: local, since: '-1h', timeoutMs: 30_000 })
    expect(commands).toHaveLength(1)
    const c = byName(r)
    expect(c.disk).toMatchObject({ status: 'pass' })
    expect(c.disk!.detail).toMatch(new RegExp(`^${cache} on /\\S*: \\d+\\.\\d% used`))
    expect(r.metrics.cacheBytes).toBeGreaterThanOrEqual(4096)
    expect(r.metrics.diskUsedRatio).toBeGreaterThan(0)
    expect(c['db-freshness']).toMatchObject({ status: 'pass' })
    expect(r.metrics.dbAgeSeconds).toBeGreaterThanOrEqual(3599)
    expect(c['db-file']).toMatchObject({ status: 'pass', detail: 'trivy.db 4 KiB, bbolt, not exclusively locked' })
    expect(c.journal?.status).not.toBe('fail')
  })

  it('finds a missing DB, a corrupted file and an exclusive lock', async () => {
    const empty = join(dir, 'empty')
    mkdirSync(empty)
    const none = byName(await hostCheck({ ...lab(empty), remote: local, since: '-1h', timeoutMs: 30_000 }))
    expect(none['db-freshness']).toMatchObject({ status: 'fail', detail: expect.stringMatching(/metadata\.json is missing/) })
    expect(none['db-file']).toMatchObject({ status: 'fail', detail: expect.stringMatching(/trivy\.db is missing/) })

    const bad = join(dir, 'bad')
    mkdirSync(join(bad, 'db'), { recursive: true })
    writeFileSync(join(bad, 'db', 'metadata.json'), '{not json')
    writeFileSync(join(bad, 'db', 'trivy.db'), Buffer.alloc(4096, 7))
    const corrupt = byName(await hostCheck({ ...lab(bad), remote: local, since: '-1h', timeoutMs: 30_000 }))
    expect(corrupt['db-freshness']).toMatchObject({ status: 'fail', detail: 'metadata.json is not valid JSON' })
    expect(corrupt['db-file']).toMatchObject({ status: 'fail', detail: expect.stringMatching(/bad magic/) })

    const locked = join(dir, 'locked')
    mkdirSync(join(locked, 'db'), { recursive: true })
    boltFile(join(locked, 'db', 'trivy.db'))
    // Its own process group, so that the lock holder (flock's shell and sleep) goes with it.
    const holder = spawn('flock', ['-x', join(locked, 'db', 'trivy.db'), '-c', 'echo held; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'], detached: true })
    try {
      await new Promise<void>((resolve) => holder.stdout!.once('data', () => resolve()))
      const held = byName(await hostCheck({ ...lab(locked), remote: local, since: '-1h', timeoutMs: 30_000 }))
      expect(held['db-file']).toMatchObject({ status: 'fail', detail: expect.stringMatching(/exclusive lock/) })
    } finally {
      process.kill(-holder.pid!, 'SIGKILL')
    }
  })

  it('a DB dated in the future is not fresh (wrong clock or forged metadata); 30 min of skew still is', async () => {
    const cache = join(dir, 'future')
    mkdirSync(join(cache, 'db'), { recursive: true })
    boltFile(join(cache, 'db', 'trivy.db'))
    const meta = (ms: number) => writeFileSync(join(cache, 'db', 'metadata.json'), JSON.stringify({ Version: 2, UpdatedAt: new Date(Date.now() + ms).toISOString() }))
    meta(30 * 24 * 3600_000)
    let c = byName(await hostCheck({ ...lab(cache), remote: local, since: '-1h', timeoutMs: 30_000 }))
    expect(c['db-freshness']).toMatchObject({ status: 'fail', detail: expect.stringMatching(/^DB UpdatedAt \S+ is 720\.0 h in the future$/), fix: expect.stringMatching(/clocks/) })
    meta(30 * 60_000)
    c = byName(await hostCheck({ ...lab(cache), remote: local, since: '-1h', timeoutMs: 30_000 }))
    expect(c['db-freshness']).toMatchObject({ status: 'pass' })
  })

  it('firewall: the live rule against the inventory, naming missing and extra sources', () => {
    const spec = { spec: { port: 4954, sources: ['198.18.0.2', '198.18.0.20'] }, edge: ['198.18.0.2'], warnings: [] }
    const table = (srcs: string, drop = true) =>
      `present\ntable inet labctl_trivy {\n\tchain input {\n\t\ttype filter hook input priority filter - 10; policy accept;\n\t\tiif "lo" tcp dport 4954 accept\n\t\tip saddr ${srcs} tcp dport 4954 accept\n${drop ? '\t\ttcp dport 4954 counter packets 3 bytes 180 drop\n' : ''}\t}\n}`
    expect(firewallVerdict(spec, { nft: table('{ 198.18.0.2, 198.18.0.20 }') }, 'trivy-0')).toEqual({ status: 'pass', detail: 'nftables: port 4954/tcp open to 198.18.0.2, 198.18.0.20 only' })
    const v = firewallVerdict(spec, { nft: table('{ 198.18.0.2, 198.18.0.30 }') }, 'trivy-0')
    expect(v).toMatchObject({ status: 'fail', detail: 'nftables rule for port 4954/tcp differs from the inventory: missing 198.18.0.20; extra 198.18.0.30', fix: expect.stringMatching(/labctl trivy install --host trivy-0/) })
    expect(firewallVerdict(spec, { nft: table('198.18.0.2', false) }, 'trivy-0').detail).toBe('nftables rule for port 4954/tcp differs from the inventory: missing 198.18.0.20; no rule drops the rest')
    expect(firewallVerdict(spec, { nft: 'present' }, 'trivy-0')).toMatchObject({ status: 'fail', detail: /not loaded/ })
    expect(firewallVerdict(spec, {}, 'trivy-0')).toMatchObject({ status: 'fail', detail: /neither ufw nor nft/ })
    expect(firewallVerdict(spec, { planOnly: 'shares the machine network namespace' }, 'trivy-0').status).toBe('skip')
    // The edge did not resolve: no verdict on a partial list (the edge's own source would look "extra").
    const unresolved = { spec: { port: 4954, sources: ['198.18.0.20'] }, edge: [], warnings: ['cannot resolve the HAProxy edge trivy.example (NXDOMAIN): only trivy.allowlist is let in'] }
    expect(firewallVerdict(unresolved, { nft: table('{ 198.18.0.2, 198.18.0.20 }') }, 'trivy-0')).toMatchObject({ status: 'warn', detail: expect.stringMatching(/cannot compare .*cannot resolve the HAProxy edge/) })
    const ufw = (status: string, lines: string[]) => ['present', status, 'Added user rules (see \'ufw status\' for running firewall):', ...lines].join('\n')
    const allow = (src: string) => `ufw allow from ${src} to any port 4954 proto tcp comment 'labctl-trivy'`
    const deny = "ufw deny 4954/tcp comment 'labctl-trivy'"
    expect(firewallVerdict(spec, { ufw: ufw('Status: active', [allow('198.18.0.2'), allow('198.18.0.20'), deny]), nft: table('{ 10.9.9.9 }') }, 'trivy-0').status).toBe('pass')
    expect(firewallVerdict(spec, { ufw: ufw('Status: active', [allow('198.18.0.2'), allow('198.18.0.99'), deny]) }, 'trivy-0').detail).toBe('ufw rule for port 4954/tcp differs from the inventory: missing 198.18.0.20; extra 198.18.0.99')
    expect(firewallVerdict(spec, { ufw: ufw('Status: inactive', [allow('198.18.0.2'), allow('198.18.0.20'), deny]) }, 'trivy-0')).toMatchObject({ status: 'fail', detail: /not active/ })
  })

  it('check reports the firewall of the machine it runs on (no labctl table here: not restricted)', async () => {
    const cache = join(dir, 'fw')
    mkdirSync(join(cache, 'db'), { recursive: true })
    const c = byName(await hostCheck({ ...lab(cache), remote: local, since: '-1h', timeoutMs: 30_000 }))
    expect(c.firewall).toMatchObject({ status: 'fail', detail: expect.stringMatching(/port 4954\/tcp is not restricted/) })
    // The script ends well without a labctl table (the SSH layer's check: true refuses a non-zero exit).
    const r = await local.run(undefined, ['sh', '-c', 'echo "@@x"\n' + FIREWALL_SCRIPT])
    expect(r.code).toBe(0)
  })
})
