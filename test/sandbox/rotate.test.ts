// rotate-token against the sandbox's real server (over SSH) and the Jenkins stand-in.
import { execa } from 'execa'
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parse, stringify } from 'yaml'
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest'
import { startJenkinsStandin, type JenkinsStandin } from '../standins/jenkins.js'
import { LABCTL, labctl, parseJson } from '../helpers.js'

const sb = inject('sandbox')
const tmp = mkdtempSync(join(tmpdir(), 'labctl-rotate-'))
const secretsDir = join(sb.dir, 'secrets', 'trivy-vm')
const tokenNow = () => readFileSync(join(secretsDir, 'token'), 'utf8').trim()
const JENKINS_API_TOKEN = 'jenkins-api-token-0123456789abcdef'
let jenkins: JenkinsStandin
let inventory: string

async function serverAccepts(token: string): Promise<boolean> {
  const r = await labctl(['trivy', 'validate', '--lab', 'sandbox', '--json', '--only', 'scan'], { env: { TRIVY_TOKEN: token } })
  return r.exitCode === 0
}

/** All three places hold the same token, and it works on the server. */
async function expectConsistent(): Promise<string> {
  const t = tokenNow()
  expect(jenkins.secretOf('system', 'trivy-server-token')).toBe(t)
  expect(await serverAccepts(t)).toBe(true)
  expect(existsSync(join(secretsDir, 'token.pending'))).toBe(false)
  return t
}

function rotate(args: string[] = [], opts: { timeoutMs?: number } = {}) {
  return labctl(['trivy', 'rotate-token', '--config', inventory, '--yes', ...args], { timeoutMs: opts.timeoutMs ?? 90_000 })
}

describe('trivy rotate-token', () => {
  beforeAll(async () => {
    jenkins = await startJenkinsStandin({
      users: [{ name: 'labctl-bot', apiToken: JENKINS_API_TOKEN }],
      credentials: [{ store: 'system', id: 'trivy-server-token', secret: tokenNow(), description: 'Trivy server token' }],
    })
    writeFileSync(join(tmp, 'jenkins-api-token'), `${JENKINS_API_TOKEN}\n`, { mode: 0o600 })
    const inv = parse(readFileSync(sb.inventory, 'utf8'))
    inv.jenkins = { url: jenkins.url, credentialId: 'trivy-server-token', store: 'system', user: 'labctl-bot', apiTokenFile: join(tmp, 'jenkins-api-token') }
    inventory = join(tmp, 'lab.yaml')
    writeFileSync(inventory, stringify(inv))
  })
  afterAll(async () => {
    await jenkins?.stop()
  })
  afterEach(async () => {
    jenkins.setFault(null)
    await labctl(['sandbox', 'heal'], { timeoutMs: 60_000 })
  })

  it('--dry-run shows the plan and changes nothing', async () => {
    const before = tokenNow()
    const r = await rotate(['--dry-run'])
    expect(r.exitCode, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/rewrite \/etc\/trivy\/trivy-server\.env .*restart trivy-server/)
    expect(r.stdout).toMatch(/Jenkins .*trivy-server-token/)
    expect(tokenNow()).toBe(before)
  })

  it('happy path: server, Jenkins and secrets dir switch to one new token; old rejected; audit and journal hold fingerprints only', async () => {
    const old = tokenNow()
    const r = await rotate(['--json'])
    expect(r.exitCode, r.stdout + r.stderr).toBe(0)
    const res = parseJson<{ journal: { state: string; oldFingerprint: string; newFingerprint: string; steps: Array<{ step: string; status: string }> } }>(r.stdout)
    expect(res.journal.state).toBe('promoted')
    expect(res.journal.steps.map((s) => `${s.step}:${s.status}`)).toEqual(['stage:done', 'server:done', 'jenkins:done', 'promote:done'])
    const now = await expectConsistent()
    expect(now).not.toBe(old)
    expect(now.length).toBeGreaterThanOrEqual(43)
    expect(await serverAccepts(old)).toBe(false)
    expect(readFileSync(join(secretsDir, 'token.prev'), 'utf8').trim()).toBe(old)
    for (const f of ['token', 'token.prev', 'rotation.json', 'audit.log']) expect(statSync(join(secretsDir, f)).mode & 0o777, f).toBe(0o600)
    const audit = readFileSync(join(secretsDir, 'audit.log'), 'utf8')
    expect(audit).toMatch(new RegExp(`${res.journal.oldFingerprint} -> ${res.journal.newFingerprint}`))
    for (const text of [audit, readFileSync(join(secretsDir, 'rotation.json'), 'utf8'), r.stdout, r.stderr]) {
      expect(text).not.toContain(now)
      expect(text).not.toContain(old)
    }
    const status = await labctl(['trivy', 'rotate-token', '--config', inventory, '--status'])
    expect(status.stdout).toMatch(/promoted/)
  })

  it('Jenkins answers 500: the server is rolled back to the old token, verified', async () => {
    const old = tokenNow()
    jenkins.setFault('500', 10)
    const r = await rotate()
    expect(r.exitCode).toBe(1)
    expect(r.stderr).toMatch(/rolled back/)
    jenkins.setFault(null)
    expect(await expectConsistent()).toBe(old)
  })

  it('Jenkins rejects the API token (401), and Jenkins hangs past the timeout: rolled back', async () => {
    const old = tokenNow()
    jenkins.setFault('401', 10)
    let r = await rotate()
    expect(r.exitCode).toBe(1)
    expect(r.stderr).toMatch(/rolled back/)
    jenkins.setFault('hang', 1)
    r = await rotate(['--jenkins-timeout', '1500'])
    expect(r.exitCode).toBe(1)
    expect(r.stderr).toMatch(/rolled back/)
    jenkins.setFault(null)
    expect(await expectConsistent()).toBe(old)
  })

  it('the restart fails: rolled back and verified', async () => {
    const old = tokenNow()
    const b = await labctl(['sandbox', 'break', 'restart-fails'])
    expect(b.exitCode, b.stderr).toBe(0)
    const r = await rotate()
    expect(r.exitCode).toBe(1)
    expect(r.stderr).toMatch(/rolled back/)
    expect(await expectConsistent()).toBe(old)
  })

  it('SSH unreachable: fails before anything changed', async () => {
    const old = tokenNow()
    const inv = parse(readFileSync(inventory, 'utf8'))
    inv.trivy.hosts[0].ssh.port = 9
    const file = join(tmp, 'no-ssh.yaml')
    writeFileSync(file, stringify(inv))
    const r = await labctl(['trivy', 'rotate-token', '--config', file, '--yes'])
    expect(r.exitCode).toBe(1)
    expect(r.stderr).toMatch(/before anything changed/)
    expect(await expectConsistent()).toBe(old)
  })

  it('--no-rollback stops for --resume; the process killed mid-rotation is finished by --resume', async () => {
    const old = tokenNow()
    jenkins.setFault('500', 10)
    let r = await rotate(['--no-rollback'])
    expect(r.exitCode).toBe(1)
    expect(r.stderr).toMatch(/--resume/)
    const st = await labctl(['trivy', 'rotate-token', '--config', inventory, '--status', '--json'])
    expect(parseJson<{ journal: { state: string } }>(st.stdout).journal.state).toBe('server-switched')
    jenkins.setFault(null)
    r = await rotate(['--resume'])
    expect(r.exitCode, r.stderr).toBe(0)
    const t1 = await expectConsistent()
    expect(t1).not.toBe(old)

    // Killed while Jenkins hangs (after the server switched): --resume completes it.
    jenkins.setFault('hang', 1)
    const seenBefore = jenkins.received.length
    const child = execa(LABCTL, ['trivy', 'rotate-token', '--config', inventory, '--yes', '--jenkins-timeout', '30000'], { reject: false })
    const deadline = Date.now() + 30_000
    // Wait until the hung Jenkins request has arrived: the server has switched by then.
    while (jenkins.received.length === seenBefore && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50))
    await new Promise((res) => setTimeout(res, 200))
    child.kill('SIGKILL')
    await child
    const st2 = await labctl(['trivy', 'rotate-token', '--config', inventory, '--status', '--json'])
    expect(parseJson<{ journal: { state: string } }>(st2.stdout).journal.state).toBe('server-switched')
    jenkins.setFault(null)
    r = await rotate(['--resume'])
    expect(r.exitCode, r.stderr).toBe(0)
    expect(await expectConsistent()).not.toBe(t1)
  })

  it('--rollback undoes an interrupted rotation: every place back to the old token', async () => {
    const old = tokenNow()
    jenkins.setFault('500', 10)
    let r = await rotate(['--no-rollback'])
    expect(r.exitCode).toBe(1)
    jenkins.setFault(null)
    expect(await serverAccepts(old)).toBe(false)
    r = await rotate(['--rollback'])
    expect(r.exitCode, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/rolled back/)
    expect(await expectConsistent()).toBe(old)
    const again = await rotate(['--rollback'])
    expect(again.exitCode).toBe(2)
    expect(again.stderr).toMatch(/no interrupted rotation/)
  })

  it('Ctrl-C while Jenkins hangs: the rotation is abandoned and rolled back at once, exit 130', async () => {
    const old = tokenNow()
    jenkins.setFault('hang', 1)
    const seenBefore = jenkins.received.length
    const child = execa(LABCTL, ['trivy', 'rotate-token', '--config', inventory, '--yes', '--jenkins-timeout', '60000'], { reject: false })
    const deadline = Date.now() + 30_000
    while (jenkins.received.length === seenBefore && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50))
    const interruptedAt = Date.now()
    child.kill('SIGINT')
    const r = await child
    expect(r.exitCode, r.stderr).toBe(130)
    expect(Date.now() - interruptedAt).toBeLessThan(20_000)
    expect(r.stderr).toMatch(/interrupted; rolled back/)
    jenkins.setFault(null)
    expect(await expectConsistent()).toBe(old)
  })

  it('local disk full while staging: nothing changes', async () => {
    const old = tokenNow()
    const small = join(tmp, 'full')
    await execa('mkdir', ['-p', small])
    await execa('mount', ['-t', 'tmpfs', '-o', 'size=16k,mode=0700', 'tmpfs', small])
    try {
      await execa('sh', ['-c', `cp ${join(secretsDir, 'token')} ${small}/token && chmod 600 ${small}/token && dd if=/dev/zero of=${small}/fill bs=1k count=64 2>/dev/null; true`])
      const inv = parse(readFileSync(inventory, 'utf8'))
      inv.secrets.dir = small
      const file = join(tmp, 'full.yaml')
      writeFileSync(file, stringify(inv))
      const r = await labctl(['trivy', 'rotate-token', '--config', file, '--yes'])
      expect(r.exitCode).toBe(1)
      expect(r.stderr).toMatch(/no space left/)
      expect(readdirSync(small).sort()).toEqual(['fill', 'token'])
    } finally {
      await execa('umount', [small])
    }
    expect(await expectConsistent()).toBe(old)
  })

  it('refuses a secrets dir inside a git work tree that does not ignore it', async () => {
    const repo = join(tmp, 'repo')
    await execa('git', ['init', '-q', repo])
    const dir = join(repo, 'secrets', 'trivy-vm')
    await execa('mkdir', ['-p', '-m', '0700', dir])
    writeFileSync(join(dir, 'token'), `${tokenNow()}\n`, { mode: 0o600 })
    const inv = parse(readFileSync(inventory, 'utf8'))
    inv.secrets.dir = dir
    const file = join(tmp, 'git.yaml')
    writeFileSync(file, stringify(inv))
    const r = await labctl(['trivy', 'rotate-token', '--config', file, '--yes'])
    expect(r.exitCode).toBe(1)
    expect(r.stderr).toMatch(/not ignored/)
    writeFileSync(join(repo, '.gitignore'), 'secrets/\n')
    const dry = await labctl(['trivy', 'rotate-token', '--config', file, '--dry-run'])
    expect(dry.exitCode).toBe(0)
  })

  it('leak test: the token never appears in output, logs, journal, or any process argv (local and on the host)', async () => {
    const seen: string[] = []
    let sampling = true
    const sampler = (async () => {
      while (sampling) {
        for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
          try {
            seen.push(readFileSync(`/proc/${pid}/cmdline`, 'utf8'))
          } catch {
            /* gone */
          }
        }
        await new Promise((res) => setTimeout(res, 20))
      }
    })()
    const old = tokenNow()
    const r = await rotate(['--json'])
    sampling = false
    await sampler
    expect(r.exitCode, r.stderr).toBe(0)
    const now = tokenNow()
    expect(seen.length).toBeGreaterThan(100)
    const logs = readdirSync(join(sb.dir, 'logs')).map((f) => readFileSync(join(sb.dir, 'logs', f), 'utf8'))
    const hostJournal = await labctl(['trivy', 'logs', '--lab', 'sandbox'])
    const everything = [r.stdout, r.stderr, ...seen, ...logs, hostJournal.stdout, readFileSync(join(secretsDir, 'rotation.json'), 'utf8'), readFileSync(join(secretsDir, 'audit.log'), 'utf8')]
    for (const secret of [now, old]) {
      const hits = everything.filter((t) => t.includes(secret)).length
      expect(hits).toBe(0)
    }
  })
})
