// The shared building blocks, without a sandbox: the one redactor, the token module, endpoint + agent,
// wait-until-healthy, the quiet-trivy environment, the private writer, the quoter in install's ufw script,
// the boundary between product and sandbox code, and systemd timestamps in any zone.
import { execFileSync } from 'node:child_process'
import { chmodSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { REDACTED, redactError, redactJson, redactText, redactUserinfo } from '../../src/redact.js'
import { maskEnv } from '../../src/trivy/install-render.js'
import { showCommand } from '../../src/runbook/argv.js'
import { shellQuote } from '../../src/ssh/quote.js'
import { LabctlError } from '../../src/errors.js'
import { checkTokenText, envFileToken, fingerprint, generateToken, loadToken, readTokenFile, withEnvToken } from '../../src/trivy/token.js'
import { directBase, edgeBase, hostBase, trivyAgent } from '../../src/trivy/endpoint.js'
import { waitHealthy } from '../../src/trivy/health.js'
import { QUIET_TRIVY_ENV, quietTrivyAssignments } from '../../src/trivy/quiet.js'
import { clientVersion } from '../../src/trivy/client.js'
import { desiredEnv } from '../../src/trivy/install-render.js'
import { ufwApplyScript } from '../../src/trivy/install.js'
import { parseShow, parseSystemdTimestamp, sections, STATUS_SCRIPT, unitStateOf } from '../../src/trivy/remote.js'
import { writePrivateFile } from '../../src/private-file.js'
import { parseInventory, type LoadedInventory } from '../../src/inventory/load.js'

const TOKEN = 'tok_9f8e7d6c5b4a39281706f5e4d3c2b1a0-x<y>&z'
const tmp = mkdtempSync(join(tmpdir(), 'labctl-blocks-'))
afterAll(() => rmSync(tmp, { recursive: true, force: true }))

const ROOT = join(import.meta.dirname, '..', '..')

function inventory(publicUrl: string, debugUrl?: string): LoadedInventory {
  const text = `name: t
dns: { servers: [127.0.0.1] }
trivy:
  version: 0.74.0
  publicUrl: ${publicUrl}
  hosts:
    - name: trivy-0
      fqdn: trivy-0.lab.test
${debugUrl ? `      debugUrl: ${debugUrl}\n` : ''}`
  return { inventory: parseInventory(text, 'inv.yaml'), path: join(tmp, 'inv.yaml'), dir: tmp }
}

describe('the one redactor', () => {
  it('replaces every spelling of a secret with the one marker', () => {
    const html = TOKEN.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
    const text = `raw ${TOKEN} html ${html} url ${encodeURIComponent(TOKEN)} json ${JSON.stringify(TOKEN)}`
    const out = redactText(text, [TOKEN])
    expect(out).not.toContain('9f8e7d6c5b4a3928')
    expect(out).toBe(`raw ${REDACTED} html ${REDACTED} url ${REDACTED} json "${REDACTED}"`)
  })

  it('replaces secret-shaped forms whose value it does not know', () => {
    expect(redactText('TRIVY_TOKEN=abc123 Trivy-Token: zzz999 Authorization: Bearer qqq', [])).toBe(`TRIVY_TOKEN=${REDACTED} Trivy-Token: ${REDACTED} Authorization: ${REDACTED}`)
    expect(redactText('<title>trivy-token: s3cret</title>', [])).toBe(`<title>trivy-token: ${REDACTED}</title>`)
  })

  it('masks user info in URLs and env files with the same marker', () => {
    expect(redactUserinfo('redis://u:pw@redis:6379 and https://a b:c@h/')).toBe(`redis://${REDACTED}@redis:6379 and https://${REDACTED}@h/`)
    expect(maskEnv('TRIVY_TOKEN=abc\nTRIVY_CACHE_BACKEND=redis://u:pw@r:6379')).toBe(`TRIVY_TOKEN=${REDACTED} (${fingerprint('abc')})\nTRIVY_CACHE_BACKEND=redis://${REDACTED}@r:6379`)
  })

  it('leaves short values and unrelated text alone', () => {
    expect(redactText('a b ab abc', ['ab', undefined, ''])).toBe('a b ab abc')
  })

  it('walks JSON (values, keys, secret-named fields) and errors (message, suggestion, cause)', () => {
    expect(redactJson({ a: [`x ${TOKEN}`], [TOKEN]: 1, password: 'p', n: 3 }, [TOKEN])).toEqual({ a: [`x ${REDACTED}`], [REDACTED]: 1, password: REDACTED, n: 3 })
    const err = new LabctlError(`failed with ${TOKEN}`, { suggestion: `retry without ${TOKEN}`, cause: new Error(`inner ${TOKEN}`) })
    redactError(err, [TOKEN])
    expect(`${err.message} ${err.suggestion} ${(err.cause as Error).message} ${err.stack}`).not.toContain(TOKEN)
    expect(err.message).toBe(`failed with ${REDACTED}`)
  })

  it('is the only marker left in the product code', () => {
    // Every other redaction in src/ must come from src/redact.ts: no second marker such as '***'.
    const offenders: string[] = []
    const walk = (dir: string): void => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = join(dir, e.name)
        if (e.isDirectory()) walk(p)
        else if (p.endsWith('.ts') && !p.endsWith('redact.ts')) {
          if (/split\([^)]*\)\.join\('\*\*\*'\)|REDACTED\s*=\s*'/.test(readFileSync(p, 'utf8'))) offenders.push(relative(ROOT, p))
        }
      }
    }
    walk(join(ROOT, 'src'))
    expect(offenders).toEqual([])
  })
})

describe('the token module', () => {
  it('generates distinct URL-safe tokens and fingerprints them stably', () => {
    const a = generateToken()
    expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(generateToken()).not.toBe(a)
    expect(fingerprint('abc')).toBe('sha256:ba7816bf8f01')
  })

  it('reads a token file, warns about an open mode, refuses what is not one line', () => {
    const p = join(tmp, 'token')
    writeFileSync(p, `${TOKEN}\n`, { mode: 0o644 })
    chmodSync(p, 0o644)
    const r = readTokenFile(p)
    expect(r.token).toBe(TOKEN)
    expect(r.warnings).toEqual([`${p} is mode 0644; token files should be 0600 (chmod 600 ${p})`])
    chmodSync(p, 0o600)
    expect(readTokenFile(p).warnings).toEqual([])
    expect(() => checkTokenText('a\nb', 'x')).toThrow('more than one line')
    expect(() => checkTokenText('a\0b', 'x')).toThrow('NUL byte')
    expect(() => checkTokenText('  ', 'x')).toThrow('is empty')
  })

  it('names the file that is missing: the --token-file given, not the secrets dir', () => {
    expect(() => loadToken({ tokenFile: join(tmp, 'nope'), secretsDir: join(tmp, 'secrets'), env: {} })).toThrow(`${join(tmp, 'nope')} does not exist`)
    expect(loadToken({ secretsDir: tmp, env: { TRIVY_TOKEN: ` ${TOKEN} ` } })).toEqual({ token: TOKEN, from: 'TRIVY_TOKEN', warnings: [] })
  })

  it('reads and sets the env file line, keeping the other lines', () => {
    const env = '# header\nTRIVY_LISTEN=0.0.0.0:4954\nexport TRIVY_TOKEN="old"\nTRIVY_TOKEN=dup\nOTHER=1\n'
    expect(envFileToken(env)).toBe('old')
    const set = withEnvToken(env, 'new-token')
    expect(set).toBe('# header\nTRIVY_LISTEN=0.0.0.0:4954\nTRIVY_TOKEN=new-token\nOTHER=1\n')
    expect(envFileToken(set)).toBe('new-token')
    expect(withEnvToken('A=1\n', 't0ken')).toBe('A=1\nTRIVY_TOKEN=t0ken\n')
    expect(envFileToken('A=1\n')).toBeUndefined()
  })
})

describe('endpoint and wait-until-healthy', () => {
  let server: Server
  let base = ''
  let answers: number[] = []
  const seen: string[] = []
  beforeAll(async () => {
    server = createServer((req, res) => {
      seen.push(req.url ?? '')
      const status = answers.shift() ?? 200
      res.writeHead(status, { 'content-type': 'text/plain' }).end(status === 200 ? 'ok' : 'no')
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  afterAll(() => new Promise<void>((r) => server.close(() => r())))
  afterEach(() => {
    answers = []
    seen.length = 0
  })

  it('a host is reached directly when it has a debug URL, else through the edge', () => {
    const loaded = inventory('https://trivy.apps.lab.test', 'http://10.0.0.5:4954/') // a path is refused by the schema (test/hostile)
    const h = loaded.inventory.trivy.hosts[0]!
    expect(directBase(h)).toBe('http://10.0.0.5:4954')
    expect(hostBase(loaded.inventory, h)).toBe('http://10.0.0.5:4954')
    expect(edgeBase(loaded.inventory)).toBe('https://trivy.apps.lab.test')
    const edgeOnly = inventory('https://trivy.apps.lab.test')
    expect(hostBase(edgeOnly.inventory, edgeOnly.inventory.trivy.hosts[0]!)).toBe('https://trivy.apps.lab.test')
  })

  it('waits until every base answers, and says how long', async () => {
    const loaded = inventory(base)
    const agent = trivyAgent(loaded, { connectTimeoutMs: 500 })
    try {
      answers = [503, 503]
      const w = await waitHealthy({ bases: [`${base}/`, base], dispatcher: agent, waitMs: 5000, intervalMs: 10 })
      expect(w.healthy).toBe(true)
      expect(w.polls).toBe(3)
      expect(seen.every((u) => u === '/healthz')).toBe(true)
    } finally {
      await agent.close()
    }
  })

  it('gives up at the deadline with the last reason, and stops at once on a signal', async () => {
    const agent = trivyAgent(inventory(base), { connectTimeoutMs: 500 })
    try {
      answers = Array(1000).fill(500)
      const started = Date.now()
      const w = await waitHealthy({ bases: [base], dispatcher: agent, waitMs: 300, intervalMs: 20 })
      expect(w.healthy).toBe(false)
      expect(w.last).toBe(`${base}/healthz answered 500`)
      expect(Date.now() - started).toBeLessThan(2000)
      const ac = new AbortController()
      setTimeout(() => ac.abort(new Error('stop')), 50)
      await expect(waitHealthy({ bases: [base], dispatcher: agent, waitMs: 60_000, intervalMs: 10_000, signal: ac.signal })).rejects.toThrow('stop')
    } finally {
      await agent.close()
    }
  })
})

describe('the quiet trivy environment', () => {
  it('turns off the version check, telemetry and progress bars', () => {
    expect(QUIET_TRIVY_ENV).toEqual({ TRIVY_SKIP_VERSION_CHECK: 'true', TRIVY_DISABLE_TELEMETRY: 'true', TRIVY_NO_PROGRESS: 'true' })
    expect(quietTrivyAssignments()).toEqual(['TRIVY_SKIP_VERSION_CHECK=true', 'TRIVY_DISABLE_TELEMETRY=true', 'TRIVY_NO_PROGRESS=true'])
  })

  it('is what the server env file, the local client and the remote status script all use', async () => {
    const loaded = inventory('https://trivy.apps.lab.test')
    const env = Object.fromEntries(desiredEnv(loaded.inventory, loaded.inventory.trivy.hosts[0]!, 'x'.repeat(43)))
    for (const [k, v] of Object.entries(QUIET_TRIVY_ENV)) expect(env[k]).toBe(v)
    // A fake trivy that prints the environment it was given.
    const bin = join(tmp, 'trivy')
    writeFileSync(bin, '#!/bin/sh\nprintf \'{"Version":"%s"}\' "$TRIVY_SKIP_VERSION_CHECK-$TRIVY_DISABLE_TELEMETRY-$TRIVY_NO_PROGRESS"\n', { mode: 0o755 })
    expect(await clientVersion(bin)).toBe('true-true-true')
    expect(STATUS_SCRIPT).toContain(`env ${quietTrivyAssignments().join(' ')} trivy --version`)
  })
})

describe('systemd timestamps in any time zone', () => {
  const at = Date.parse('2026-12-01T08:14:03Z')

  it('parses UTC, zone abbreviations, numeric offsets and @epoch', () => {
    expect(parseSystemdTimestamp('Tue 2026-12-01 08:14:03 UTC')).toBe(at)
    expect(parseSystemdTimestamp('Tue 2026-12-01 09:14:03 CET')).toBe(at)
    expect(parseSystemdTimestamp('Tue 2026-12-01 03:14:03 EST')).toBe(at)
    expect(parseSystemdTimestamp('Tue 2026-12-01 13:44:03 +0530')).toBe(at)
    expect(parseSystemdTimestamp('@1796112843')).toBe(at)
    // Ambiguous abbreviations are left to the host's own reading of the time.
    expect(parseSystemdTimestamp('Tue 2026-12-01 13:44:03 IST')).toBeNaN()
    expect(parseSystemdTimestamp('Tue 2026-12-01 13:44:03 IST', '1796112843')).toBe(at)
    expect(parseSystemdTimestamp('n/a')).toBeNaN()
  })

  it('a host in CET keeps its uptime', () => {
    const show = parseShow('ActiveState=active\nSubState=running\nMainPID=42\nNRestarts=0\nUnitFileState=enabled\nActiveEnterTimestamp=Tue 2026-12-01 09:14:03 CET\n')
    const u = unitStateOf(show, undefined, at + 90_000)
    expect(u.since).toBe('Tue 2026-12-01 09:14:03 CET')
    expect(u.uptimeSeconds).toBe(90)
  })

  it('the status script reads the time on the host in its own zone (date -d), here Asia/Kolkata', () => {
    // A systemctl that prints what systemd prints in that zone, as the status script sees it on the host.
    const bin = mkdtempSync(join(tmp, 'bin-'))
    const since = Math.floor(Date.now() / 1000) - 3600
    writeFileSync(
      join(bin, 'systemctl'),
      `#!/bin/sh\nif [ "$4" = MainPID ]; then echo 0; exit 0; fi\necho ActiveState=active\necho ActiveEnterTimestamp=$(date -d @${since} '+%a %Y-%m-%d %H:%M:%S %Z')\n`,
      { mode: 0o755 },
    )
    writeFileSync(join(bin, 'trivy'), '#!/bin/sh\necho "Version: 0.74.0"\n', { mode: 0o755 })
    const out = execFileSync('sh', ['-c', STATUS_SCRIPT, 'labctl-status', 'trivy-server'], { env: { PATH: `${bin}:/usr/bin:/bin`, TZ: 'Asia/Kolkata' }, encoding: 'utf8' })
    const s = sections(out)
    expect(parseShow(s.head ?? '').ActiveEnterTimestamp).toMatch(/ IST$/)
    expect(s.trivy?.trim()).toBe('0.74.0')
    const u = unitStateOf(parseShow(s.head ?? ''), s.since, since * 1000 + 3600_000)
    expect(u.uptimeSeconds).toBe(3600)
  })
})

describe('one private writer, one quoter, one boundary', () => {
  it('writes privately and atomically, also over an existing world-readable file', () => {
    const p = join(tmp, 'user-data.yaml')
    writeFileSync(p, 'old', { mode: 0o644 })
    chmodSync(p, 0o644)
    writePrivateFile(p, `#cloud-config\nTRIVY_TOKEN=${TOKEN}\n`)
    expect(statSync(p).mode & 0o777).toBe(0o600)
    expect(readFileSync(p, 'utf8')).toContain(TOKEN)
    expect(readdirSync(tmp).filter((n) => n.includes('.tmp-'))).toEqual([])
  })

  it("install's ufw script quotes every word with the one quoter (a ' stays one word)", () => {
    const script = ufwApplyScript('', { port: 4954, sources: ["10.0.0.1'; touch /tmp/pwned; '"] })
    const line = script.split('\n').find((l) => l.startsWith('ufw allow'))!
    expect(line).toBe(`ufw allow from '10.0.0.1'\\''; touch /tmp/pwned; '\\''' to any port 4954 proto tcp comment labctl-trivy >/dev/null`)
    const words = execFileSync('sh', ['-c', `set -- ${line.replace(/^ufw /, '').replace(/ >\/dev\/null$/, '')}; printf '%s\\n' "$3"`], { encoding: 'utf8' })
    expect(words).toBe("10.0.0.1'; touch /tmp/pwned; '\n")
  })

  it('runbooks show commands with the same quoter the SSH layer uses', () => {
    const argv = ['trivy', 'exec', '--', "it's", '$(id)', 'a b', '=x']
    expect(showCommand(argv)).toBe(shellQuote(argv))
  })

  it('nothing in src/ outside src/sandbox imports src/sandbox', () => {
    const offenders: string[] = []
    const walk = (dir: string): void => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = join(dir, e.name)
        if (e.isDirectory()) {
          if (p !== join(ROOT, 'src', 'sandbox')) walk(p)
        } else if (p.endsWith('.ts') && /from\s+'[./]*\/?sandbox\/|import\('[./]*sandbox\//.test(readFileSync(p, 'utf8'))) offenders.push(relative(ROOT, p))
      }
    }
    walk(join(ROOT, 'src'))
    expect(offenders).toEqual([])
  })
})
