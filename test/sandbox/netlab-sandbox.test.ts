// A private `sandbox up --net`: every part on its own machine (network namespace) of one lab /24, the
// scanner host's listener behind labctl's own nftables rules, and `down` leaving the machine as it was.
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { parse } from 'yaml'
import type { SandboxStatus } from '../../src/sandbox/index.js'
import { trivyBinary } from '../../src/sandbox/prereqs.js'
import { httpRequest } from '../../src/net/http.js'
import { fingerprint } from '../../src/trivy/token.js'
import { labctl, parseJson } from '../helpers.js'
import { apartFromOtherLabs, machine, probe } from './netlab-helpers.js'

describe('sandbox up --net (the lab as a network)', () => {
  it('runs each part on its node, answers with lab addresses, firewalls the listener; down restores the machine', async () => {
    const before = await machine()
    const root = mkdtempSync(join(tmpdir(), 'labctl-net-'))
    const env = { XDG_CONFIG_HOME: join(root, 'config'), LABCTL_SANDBOX_DIR: join(root, 'sb') }
    let downDone = false
    onTestFinished(async () => {
      if (!downDone) await labctl(['sandbox', 'down'], { env, timeoutMs: 120_000 })
      rmSync(root, { recursive: true, force: true })
    })
    const t0 = Date.now()
    const up = await labctl(['sandbox', 'up', '--net', '--json'], { env, timeoutMs: 240_000 })
    const upMs = Date.now() - t0
    expect(up.exitCode, up.stderr).toBe(0)
    const s = parseJson<SandboxStatus>(up.stdout)
    expect(s.up).toBe(true)
    const net = s.network!
    expect(net.subnet).toMatch(/^198\.1[89]\.\d{1,3}\.0\/24$/)
    const addr = Object.fromEntries(net.nodes.map((n) => [n.name, n.address])) as Record<string, string>
    expect(Object.keys(addr)).toEqual(['edge', 'trivy-0', 'dns', 'registry', 'jenkins', 'agent', 'outsider', 'redis', 'monitor'])
    expect(s.components.map((c) => [c.name, c.node, c.address, c.healthy])).toEqual([
      ['registry', 'registry', addr.registry, true],
      ['dns', 'dns', addr.dns, true],
      ['host', 'trivy-0', addr['trivy-0'], true],
      ['trivy', 'trivy-0', addr['trivy-0'], true],
      ['haproxy', 'edge', addr.edge, true],
    ])
    const ns = (n: string): string => net.nodes.find((x) => x.name === n)!.namespace

    // Built by labctl itself: right after up, `trivy install --dry-run` has nothing to change (firewall included).
    type Plan = { hosts: Array<{ changes: number; plan: Array<{ id: string; action: string }> }> }
    const dry = await labctl(['--lab', 'sandbox', 'trivy', 'install', '--dry-run', '--json'], { env, timeoutMs: 120_000 })
    expect(dry.exitCode, dry.stderr).toBe(0)
    expect(parseJson<Plan>(dry.stdout).hosts[0]!.plan.filter((x) => x.action !== 'none')).toEqual([])

    // The inventory speaks lab addresses: DNS on the dns node, the host's address, the allowlist.
    const inv = parse(readFileSync(s.inventory!, 'utf8')) as { dns: { servers: string[] }; trivy: { allowlist: string[]; hosts: Array<{ address: string; listen: string }> } }
    expect(inv.dns.servers).toEqual([`${addr.dns}:53`])
    expect(inv.trivy.hosts[0]).toMatchObject({ address: addr['trivy-0'], listen: `${addr['trivy-0']}:4954` })
    expect(inv.trivy.allowlist).toEqual([net.workstation, addr.agent])

    // Idempotent: a second `up --net` changes nothing; the loopback sandbox cannot be asked for while it is up.
    const again = await labctl(['sandbox', 'up', '--net', '--json'], { env, timeoutMs: 60_000 })
    expect(again.exitCode, again.stderr).toBe(0)
    expect(parseJson(again.stdout)).toMatchObject({ changed: false, up: true, network: { subnet: net.subnet } })
    const other = await labctl(['sandbox', 'up', '--loopback'], { env, timeoutMs: 60_000 })
    expect(other.exitCode).toBe(1)
    expect(other.stderr).toMatch(/already up as a lab network/)

    // `status` draws the nodes with their addresses.
    const st = await labctl(['sandbox', 'status'], { env })
    expect(st.exitCode, st.stderr).toBe(0)
    for (const n of net.nodes) expect(st.stdout).toMatch(new RegExp(`\\b${n.name}\\s+${n.address.replaceAll('.', '\\.')}\\s`))

    // What the agent sees: the lab DNS answers lab addresses; the edge serves the public name over TLS.
    const dig = await labctl(['sandbox', 'exec', 'agent', '--', 'dig', '+short', '+time=2', '+tries=1', `@${addr.dns}`, 'trivy.apps.sandbox.lab.test'], { env })
    expect(dig.stdout.trim()).toBe(addr.edge)
    const ca = join(env.LABCTL_SANDBOX_DIR, 'tls', 'ca.pem')
    const curl = await labctl(['sandbox', 'exec', 'agent', '--', 'curl', '-sS', '--max-time', '5', '--cacert', ca, '--resolve', `trivy.apps.sandbox.lab.test:443:${addr.edge}`, 'https://trivy.apps.sandbox.lab.test/healthz'], { env })
    expect(curl.exitCode, curl.stderr).toBe(0)
    expect(curl.stdout.trim()).toBe('ok')

    // The firewall in trivy-0's namespace: the listener answers the edge, the agent and the workstation, not the outsider.
    const t = addr['trivy-0']!
    expect(await probe(ns('edge'), t, 4954)).toBe('open')
    expect(await probe(ns('agent'), t, 4954)).toBe('open')
    expect(await probe(undefined, t, 4954)).toBe('open')
    expect(await probe(ns('outsider'), t, 4954)).toBe('timeout')
    // sshd is not behind that rule: the outsider reaches port 22 (only the listener is restricted).
    expect(await probe(ns('outsider'), t, 22)).toBe('open')
    // Without the table the outsider gets through (so the check above can fail); reloading the file closes it again.
    const del = await labctl(['sandbox', 'exec', 'trivy-0', '--', 'nft', 'delete', 'table', 'inet', 'labctl_trivy'], { env })
    expect(del.exitCode, del.stderr).toBe(0)
    expect(await probe(ns('outsider'), t, 4954)).toBe('open')
    // `trivy check` reads the rule live and compares it with the inventory: gone is a failure, reloaded a pass.
    type Checked = { checks: Array<{ check: string; status: string; detail: string }> }
    const fwCheck = async () => {
      const r = await labctl(['--lab', 'sandbox', 'trivy', 'check', '--json'], { env, timeoutMs: 60_000 })
      return { code: r.exitCode, fw: parseJson<Checked>(r.stdout).checks.find((c) => c.check === 'firewall') }
    }
    const open = await fwCheck()
    expect(open.code).toBe(3)
    expect(open.fw).toMatchObject({ status: 'fail', detail: expect.stringMatching(/port 4954\/tcp is not restricted: nftables table inet labctl_trivy is not loaded/) })
    const load = await labctl(['sandbox', 'exec', 'trivy-0', '--', 'nft', '-f', '/etc/nftables.d/labctl-trivy.nft'], { env })
    expect(load.exitCode, load.stderr).toBe(0)
    expect(await probe(ns('outsider'), t, 4954)).toBe('timeout')
    const closed = await fwCheck()
    expect(closed.fw).toMatchObject({ status: 'pass', detail: `nftables: port 4954/tcp open to ${[addr.edge, net.workstation, addr.agent].sort().join(', ')} only` })

    // labctl operates the lab over it: validate passes through the edge and directly.
    const v = await labctl(['--lab', 'sandbox', 'trivy', 'validate', '--json'], { env, timeoutMs: 120_000 })
    expect(v.exitCode, v.stdout.slice(0, 2000)).toBe(0)

    // The registry on its machine speaks HTTPS with a certificate of the sandbox CA; the workstation's trivy
    // client pulls the test image from it through the edge-fronted server.
    const reg = await labctl(['sandbox', 'exec', 'agent', '--', 'curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '5', '--cacert', ca, `https://${addr.registry}:5000/v2/`], { env })
    expect(reg.stdout).toBe('200')
    const img = await labctl(['--lab', 'sandbox', 'trivy', 'validate', '--json', '--only', 'image', '--image', s.image!, '--gate', 'CRITICAL', '--scan-timeout', '60000'], {
      env: { ...env, LABCTL_TRIVY_BIN: trivyBinary() },
      timeoutMs: 120_000,
    })
    expect(img.exitCode, img.stdout.slice(0, 2000)).toBe(0)
    expect(parseJson<{ checks: Array<{ detail: string }> }>(img.stdout).checks[0]!.detail).toMatch(/gate CRITICAL clean/)

    // Jenkins on its node: the stand-in holds the sandbox token in the credential the inventory names, and
    // labctl's API token is in a 0600 file.
    const jk = (parse(readFileSync(s.inventory!, 'utf8')) as { jenkins: { url: string; user: string; apiTokenFile: string; credentialId: string; store: string } }).jenkins
    expect(jk).toMatchObject({ url: `http://${addr.jenkins}:8080`, user: 'labctl', credentialId: 'trivy-server-token', store: 'system' })
    expect(statSync(jk.apiTokenFile).mode & 0o777).toBe(0o600)
    expect(s.jenkins).toMatchObject({ name: 'jenkins', node: 'jenkins', address: addr.jenkins, healthy: true })
    const apiToken = readFileSync(jk.apiTokenFile, 'utf8').trim()
    const auth = `Basic ${Buffer.from(`labctl:${apiToken}`).toString('base64')}`
    const list = await httpRequest(`${jk.url}/credentials/store/system/domain/_/api/json?tree=credentials%5Bid%5D`, { headers: { authorization: auth }, timeoutMs: 5000 })
    expect(list.status).toBe(200)
    expect(JSON.parse(list.body)).toMatchObject({ credentials: [{ id: 'trivy-server-token' }] })
    const anon = await httpRequest(`${jk.url}/credentials/store/system/domain/_/api/json`, { timeoutMs: 5000 })
    expect(anon.status).toBe(403)
    const cfg = await labctl(['--lab', 'sandbox', 'config', 'validate', '--json'], { env })
    expect(cfg.exitCode, cfg.stdout + cfg.stderr).toBe(0)

    // rotate-token updates all three places: the server, Jenkins' credential and the secrets dir.
    const tokenFile = join(env.LABCTL_SANDBOX_DIR, 'secrets', 'trivy-vm', 'token')
    const before1 = fingerprint(readFileSync(tokenFile, 'utf8').trim())
    const jlog = join(env.LABCTL_SANDBOX_DIR, 'logs', 'jenkins.log')
    expect(readFileSync(jlog, 'utf8')).toContain(`credential system/trivy-server-token holds ${before1}`)
    // The agent's build binds the Jenkins credential (over the agent channel, as withCredentials does) and scans
    // the test image with the real trivy client through the edge, with that credential's token.
    const build = join(env.LABCTL_SANDBOX_DIR, 'agent-build.json')
    type Build = { tokenFingerprint?: string; vulnerabilities?: string[]; error?: string }
    const agentScan = async (file = build): Promise<{ code: number; out: Build; raw: string }> => {
      const r = await labctl(['sandbox', 'exec', 'agent', '--', process.execPath, join(process.cwd(), 'test', 'standins', 'agent-build.mjs'), file], { env, timeoutMs: 120_000 })
      expect(r.stdout + r.stderr).not.toContain(readFileSync(tokenFile, 'utf8').trim())
      return { code: r.exitCode ?? -1, out: parseJson<Build>(r.stdout), raw: r.stdout + r.stderr }
    }
    const scan1 = await agentScan()
    expect(scan1.code, scan1.raw).toBe(0)
    expect(scan1.out).toEqual({ tokenFingerprint: before1, vulnerabilities: ['CVE-2020-1967 HIGH', 'CVE-2019-1549 MEDIUM'] })
    expect(readFileSync(jlog, 'utf8')).toContain(`agent agent bound system/trivy-server-token (${before1}) for a build`)
    // The channel is Jenkins' to grant: a wrong agent secret gets no token, so no scan.
    const badSecret = join(root, 'bad-agent-secret')
    writeFileSync(badSecret, 'not-the-agent-secret\n', { mode: 0o600 })
    const badBuild = join(root, 'bad-build.json')
    writeFileSync(badBuild, JSON.stringify({ ...JSON.parse(readFileSync(build, 'utf8')), agentSecretFile: badSecret }))
    const refused = await agentScan(badBuild)
    expect(refused.code).toBe(1)
    expect(refused.out.error).toMatch(/Jenkins refused the binding: unknown agent or wrong agent secret/)

    const rot = await labctl(['--lab', 'sandbox', 'trivy', 'rotate-token', '--yes', '--json'], { env, timeoutMs: 120_000 })
    expect(rot.exitCode, rot.stdout.slice(0, 2000) + rot.stderr).toBe(0)
    const journal = parseJson<{ journal: { newFingerprint: string; steps: Array<{ step: string; status: string }> } }>(rot.stdout).journal
    expect(journal.steps.map((x) => [x.step, x.status])).toEqual([['stage', 'done'], ['server', 'done'], ['jenkins', 'done'], ['promote', 'done']])
    const after1 = fingerprint(readFileSync(tokenFile, 'utf8').trim())
    expect(after1).toBe(journal.newFingerprint)
    expect(after1).not.toBe(before1)
    await expect.poll(() => readFileSync(jlog, 'utf8'), { timeout: 5000 }).toContain(`credential system/trivy-server-token holds ${after1}`)
    const v2 = await labctl(['--lab', 'sandbox', 'trivy', 'validate', '--json', '--only', 'auth,scan'], { env, timeoutMs: 120_000 })
    expect(v2.exitCode, v2.stdout.slice(0, 2000)).toBe(0)
    // The agent's next build uses the rotated credential, and the server accepts it (the rotation proved the old one rejected).
    const scan2 = await agentScan()
    expect(scan2.code, scan2.raw).toBe(0)
    expect(scan2.out).toEqual({ tokenFingerprint: after1, vulnerabilities: ['CVE-2020-1967 HIGH', 'CVE-2019-1549 MEDIUM'] })

    const t1 = Date.now()
    const down = await labctl(['sandbox', 'down', '--json'], { env, timeoutMs: 120_000 })
    downDone = true
    const downMs = Date.now() - t1
    expect(down.exitCode, down.stdout + down.stderr).toBe(0)
    expect(parseJson(down.stdout)).toMatchObject({ leftover: [] })
    expect(apartFromOtherLabs(await machine(), net.link)).toEqual(apartFromOtherLabs(before, net.link))
    process.stderr.write(`[netlab] sandbox up --net in ${upMs} ms, down in ${downMs} ms\n`)
  }, 300_000)

  it('`trivy install` on a bare lab-network host applies its firewall for real: the outsider times out, a rerun plans no change', async () => {
    const root = mkdtempSync(join(tmpdir(), 'labctl-netfw-'))
    const env = { XDG_CONFIG_HOME: join(root, 'config'), LABCTL_SANDBOX_DIR: join(root, 'sb'), LABCTL_LAB: 'sandbox' }
    onTestFinished(async () => {
      await labctl(['sandbox', 'down'], { env, timeoutMs: 120_000 })
      rmSync(root, { recursive: true, force: true })
    })
    const up = await labctl(['sandbox', 'up', '--net', '--bare', '--json'], { env, timeoutMs: 240_000 })
    expect(up.exitCode, up.stderr).toBe(0)
    const net = parseJson<SandboxStatus>(up.stdout).network!
    const ns = (n: string): string => net.nodes.find((x) => x.name === n)!.namespace
    const t = net.nodes.find((x) => x.name === 'trivy-0')!.address
    // A bare host has no rule yet; its namespace is its own, so install does not stop at "plan only".
    const nft = await labctl(['sandbox', 'exec', 'trivy-0', '--', 'nft', 'list', 'ruleset'], { env })
    expect(nft.exitCode, nft.stderr).toBe(0)
    expect(nft.stdout).not.toContain('labctl_trivy')
    type Plan = { hosts: Array<{ plan: Array<{ id: string; action: string }>; applied: Array<{ id: string }>; validate?: { ok: boolean } }> }
    const run = await labctl(['trivy', 'install', '--yes', '--json'], { env, timeoutMs: 240_000 })
    expect(run.exitCode, run.stdout.slice(0, 3000) + run.stderr).toBe(0)
    const h = parseJson<Plan>(run.stdout).hosts[0]!
    expect(h.applied.map((x) => x.id)).toContain('firewall')
    expect(h.validate?.ok).toBe(true)
    expect(await probe(ns('agent'), t, 4954)).toBe('open')
    expect(await probe(ns('edge'), t, 4954)).toBe('open')
    expect(await probe(ns('outsider'), t, 4954)).toBe('timeout')
    const again = await labctl(['trivy', 'install', '--dry-run', '--json'], { env, timeoutMs: 120_000 })
    expect(again.exitCode, again.stderr).toBe(0)
    expect(parseJson<Plan>(again.stdout).hosts[0]!.plan.find((x) => x.id === 'firewall')!.action).toBe('none')
  }, 240_000)
})
