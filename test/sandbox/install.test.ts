// `labctl trivy install` against a private bare sandbox (its own temp dirs): fresh install from the loopback
// package source to a passing validate, idempotence, drift repair, version drift, a package source that
// goes down half-way, and the cloud-init / HAProxy renderers. The shared sandbox is not touched.
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { parse, stringify } from 'yaml'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hostExec } from '../../src/sandbox/host.js'
import { readState } from '../../src/sandbox/layout.js'
import { componentAddr } from '../../src/sandbox/nodes.js'
import { freePorts } from '../../src/sandbox/proc.js'
import { which } from '../../src/sandbox/prereqs.js'
import { checkCloudConfig, CLOUD_INIT_SCRIPT } from '../../src/trivy/install-cloudinit.js'
import {
  HAPROXY_RULES_BEGIN,
  HAPROXY_RULES_END,
  lineDiff,
  maskEnv,
  mergeEnv,
  nftRuleset,
  packageSource,
  parseUfwAdded,
  ufwKeys,
  ufwRules,
} from '../../src/trivy/install-render.js'
import { parseInventory } from '../../src/inventory/load.js'
import { labctl, parseJson } from '../helpers.js'

type Resource = { id: string; action: string; current: string; desired: string; diff?: string[]; notes?: string[]; warnings?: string[] }
type HostResult = { host: string; plan: Resource[]; changes: number; applied: Array<{ id: string; detail: string }>; ok: boolean; validate?: { ok: boolean; checks: Array<{ name: string; status: string; detail: string }> } }
type InstallResult = { lab: string; dryRun: boolean; ok: boolean; hosts: HostResult[] }

const root = mkdtempSync(join(tmpdir(), 'labctl-install-'))
const sbDir = join(root, 'sb')
const env = {
  XDG_CONFIG_HOME: join(root, 'config'),
  LABCTL_SANDBOX_DIR: sbDir,
  LABCTL_LAB: 'sandbox',
  TRIVY_SKIP_VERSION_CHECK: 'true',
  TRIVY_DISABLE_TELEMETRY: 'true',
}
const inventoryFile = join(root, 'config', 'labctl', 'labs', 'sandbox.yaml')
const tokenFile = join(sbDir, 'secrets', 'trivy-vm', 'token')
const token = (): string => (existsSync(tokenFile) ? readFileSync(tokenFile, 'utf8').trim() : '')
const host = async (script: string): Promise<string> =>
  hostExec(readState(sbDir)!, ['sh', '-c', `export TRIVY_SKIP_VERSION_CHECK=true TRIVY_DISABLE_TELEMETRY=true; ${script}`])

async function install(args: string[], timeoutMs = 120_000) {
  const r = await labctl(['trivy', 'install', '--json', ...args], { env, timeoutMs })
  const out = String(r.stdout)
  // Whatever happens, the token is never printed.
  if (token()) expect(out + String(r.stderr)).not.toContain(token())
  return { code: r.exitCode ?? -1, stdout: out, stderr: String(r.stderr), json: out.trim() ? parseJson<InstallResult & { status?: string; error?: { code: string; message: string; suggestion?: string } }>(out) : undefined }
}
const res = (h: HostResult, id: string): Resource => h.plan.find((r) => r.id === id)!
/** Where a part of this sandbox answers, as a regex source: a lab address (or 127.0.0.1 with --loopback), from its state. */
const at = (part: 'pkg' | 'registry'): string => componentAddr(readState(sbDir)!, part).replaceAll('.', '\\.')
/** The lab network has a firewall of its own; the loopback sandbox (--loopback) only plans it. */
const ownNet = (): boolean => Boolean(readState(sbDir)?.net)
const changed = (h: HostResult): string[] => h.plan.filter((r) => r.action === 'create' || r.action === 'update').map((r) => r.id)

async function sandbox(args: string[]): Promise<void> {
  const r = await labctl(['sandbox', ...args], { env, timeoutMs: 60_000 })
  expect(r.exitCode, `${args.join(' ')}: ${r.stderr}`).toBe(0)
}

describe('trivy install: render helpers', () => {
  it('env file: merged idempotently, unmanaged lines kept, the token only ever shown as a fingerprint', () => {
    const desired: Array<[string, string]> = [
      ['TRIVY_TOKEN', 's3cret-token-value'],
      ['TRIVY_LISTEN', '0.0.0.0:4954'],
    ]
    const current = '# mine\nTRIVY_SKIP_DB_UPDATE=true\nTRIVY_TOKEN=old\nTRIVY_DB_REPOSITORY=gone\nTRIVY_TOKEN=dup\n'
    const once = mergeEnv(current, desired, '# header\n')
    expect(once).toBe('# mine\nTRIVY_SKIP_DB_UPDATE=true\nTRIVY_TOKEN=s3cret-token-value\nTRIVY_LISTEN=0.0.0.0:4954\n')
    expect(mergeEnv(once, desired, '# header\n')).toBe(once)
    expect(mergeEnv(undefined, desired, '# header\n')).toBe('# header\nTRIVY_TOKEN=s3cret-token-value\nTRIVY_LISTEN=0.0.0.0:4954\n')
    const masked = maskEnv(`${once}TRIVY_CACHE_BACKEND=redis://u:pw@redis:6379\nTRIVY_TOKEN_HEADER=Trivy-Token`)
    expect(masked).not.toContain('s3cret')
    expect(masked).not.toContain(':pw@')
    expect(masked).toMatch(/TRIVY_TOKEN=\[REDACTED\] \(sha256:[0-9a-f]{12}\)/)
    expect(masked).toContain('TRIVY_TOKEN_HEADER=Trivy-Token')
    expect(lineDiff('a\nb\nc\n', 'a\nB\nc\n')).toEqual(['- b', '+ B'])
    expect(lineDiff('a\n', 'a\n')).toEqual([])
  })

  it('package URLs, ufw and nftables rules', () => {
    const inv = parseInventory(
      stringify({ name: 'x', dns: { servers: ['10.0.0.53'] }, trivy: { version: '0.74.0', publicUrl: 'https://trivy.apps.x.test', hosts: [{ name: 'trivy-0', fqdn: 'trivy-0.x.test' }] } }),
      'x.yaml',
    )
    expect(packageSource(inv, 'amd64')).toEqual({
      template: 'https://github.com/aquasecurity/trivy/releases/download/v{version}/trivy_{version}_Linux-{arch}.deb',
      url: 'https://github.com/aquasecurity/trivy/releases/download/v0.74.0/trivy_0.74.0_Linux-64bit.deb',
      checksumsUrl: 'https://github.com/aquasecurity/trivy/releases/download/v0.74.0/trivy_0.74.0_checksums.txt',
      file: 'trivy_0.74.0_Linux-64bit.deb',
    })
    expect(() => parseInventory(stringify({ ...parse(stringify(inv)), trivy: { ...inv.trivy, packageUrl: 'https://mirror/trivy.deb' } }), 'y.yaml')).toThrow(/packageUrl/)
    const spec = { port: 4954, sources: ['10.0.0.5', '10.1.0.0/24', 'fd00::5'] }
    expect(ufwRules(spec).at(-1)).toEqual(['deny', 'to', 'any', 'port', '4954', 'proto', 'tcp', 'comment', 'labctl-trivy'])
    expect(ufwRules(spec)[0]!.slice(0, 3)).toEqual(['allow', 'from', '10.0.0.5'])
    // `ufw show added` prints rules in its own normalized form: they compare equal to what we add.
    const added = [
      "ufw allow from 10.0.0.5 to any port 4954 proto tcp comment 'labctl-trivy'",
      "ufw allow from 10.1.0.0/24 to any port 4954 proto tcp comment 'labctl-trivy'",
      "ufw allow from fd00::5 to any port 4954 proto tcp comment 'labctl-trivy'",
      "ufw deny 4954/tcp comment 'labctl-trivy'",
      'ufw allow OpenSSH',
    ].join('\n')
    expect(parseUfwAdded(added)).toEqual(ufwKeys(spec))
    expect(parseUfwAdded(added.replace('10.0.0.5', '10.0.0.6'))).not.toEqual(ufwKeys(spec))
    const nft = nftRuleset(spec)
    expect(nft).toContain('ip saddr { 10.0.0.5, 10.1.0.0/24 } tcp dport 4954 accept')
    expect(nft).toContain('ip6 saddr { fd00::5 } tcp dport 4954 accept')
    expect(nft.indexOf('accept')).toBeLessThan(nft.indexOf('drop'))
  })
})

describe('trivy install on a bare sandbox host', () => {
  beforeAll(async () => {
    const up = await labctl(['sandbox', 'up', '--bare', '--json'], { env, timeoutMs: 180_000 })
    expect(up.exitCode, String(up.stderr)).toBe(0)
    expect(parseJson<{ bare: boolean; packageServer: { healthy: boolean } }>(String(up.stdout))).toMatchObject({ bare: true, packageServer: { healthy: true } })
  }, 200_000)
  afterAll(async () => {
    await labctl(['sandbox', 'down'], { env, timeoutMs: 60_000 })
    rmSync(root, { recursive: true, force: true })
  }, 70_000)

  it('the bare host has no trivy; HAProxy answers 503; the inventory names the package source', async () => {
    expect(await host('command -v trivy || echo none; id trivy 2>&1 || true; ls /etc/trivy /var/lib/trivy 2>&1 || true')).toMatch(/^none\n.*no such user[\s\S]*No such file[\s\S]*No such file/)
    const inv = parse(readFileSync(inventoryFile, 'utf8'))
    expect(inv.trivy.packageUrl).toMatch(new RegExp(`^http://${at('pkg')}:\\d+/v\\{version\\}/trivy_\\{version\\}_Linux-\\{arch\\}\\.deb$`))
    const v = await labctl(['trivy', 'validate', '--only', 'healthz', '--json', '--timeout', '3000'], { env })
    expect(v.exitCode).toBe(3)
    expect(String(v.stdout)).toMatch(/503/)
  })

  it('--dry-run plans every resource and changes nothing', async () => {
    // No token in the secrets dir yet: install generates one (and stores it only when it applies).
    rmSync(tokenFile)
    const r = await install(['--dry-run'])
    expect(r.code, r.stderr).toBe(0)
    const h = r.json!.hosts[0]!
    expect(r.json!.dryRun).toBe(true)
    expect(h.plan.map((p) => p.id)).toEqual(['package', 'hold', 'user', 'cache-dir', 'env-file', 'unit', 'firewall', 'service'])
    if (ownNet()) {
      // A machine of the lab network: its firewall (nftables in its own namespace) is part of the plan.
      expect(changed(h)).toEqual(['package', 'hold', 'user', 'cache-dir', 'env-file', 'unit', 'firewall', 'service'])
      expect(res(h, 'firewall').action).toBe('create')
    } else {
      // The loopback host shares the CI machine's network namespace: the firewall is never touched there.
      expect(changed(h)).toEqual(['package', 'hold', 'user', 'cache-dir', 'env-file', 'unit', 'service'])
      expect(res(h, 'firewall')).toMatchObject({ action: 'skip', warnings: [expect.stringMatching(/skipped: neither ufw nor nft on the host|planned only/)] })
    }
    expect(res(h, 'env-file').diff!.join('\n')).toMatch(/TRIVY_TOKEN=\[REDACTED\] \(sha256:[0-9a-f]{12}\)/)
    expect(res(h, 'env-file').diff!.join('\n')).toMatch(new RegExp(`TRIVY_DB_REPOSITORY=${at('registry')}:\\d+/aquasec/trivy-db:2`))
    expect(res(h, 'env-file').diff!.join('\n')).not.toMatch(/SKIP_DB_UPDATE/)
    expect(res(h, 'env-file').notes).toContainEqual(expect.stringMatching(/a new token, generated now and stored in .*secrets\/trivy-vm\/token \(0600\)/))
    expect(res(h, 'cache-dir').warnings).toContainEqual(expect.stringMatching(/\/var\/lib\/trivy is not its own mount \(it is on \/var\)/))
    expect(await host('command -v trivy || echo none; ls /etc/trivy 2>&1 || true')).toMatch(/^none\n.*No such file/)
    expect(existsSync(tokenFile)).toBe(false)
  })

  it('package source down half-way: one clear error, nothing half-written', async () => {
    await sandbox(['break', 'pkg-source-down'])
    const r = await install(['--yes'])
    expect(r.code).toBe(1)
    expect(r.json).toMatchObject({ status: 'error', error: { code: 'INSTALL_PACKAGE_FAILED' } })
    expect(r.json!.error!.message).toMatch(new RegExp(`installing trivy 0\\.74\\.0 failed: cannot download http://${at('pkg')}:\\d+/v0\\.74\\.0/trivy_0\\.74\\.0_Linux-64bit\\.deb: curl: \\(18\\).*nothing was installed`))
    expect(r.json!.error!.message).not.toContain('\n')
    expect(readFileSync(join(sbDir, 'logs', 'pkg.log'), 'utf8')).toMatch(/cut off after \d+ of \d+ bytes/)
    // Nothing half-written: no package, no binary, no partial download, no files, no user.
    expect(await host("dpkg-query -W trivy 2>&1; ls /usr/bin/trivy /var/tmp/labctl-trivy.* /etc/trivy /etc/systemd/system/trivy-server.service 2>&1; id trivy 2>&1; echo end")).toMatch(
      /no packages found matching trivy[\s\S]*cannot access '\/usr\/bin\/trivy'[\s\S]*cannot access '\/var\/tmp\/labctl-trivy\.\*'[\s\S]*cannot access '\/etc\/trivy'[\s\S]*cannot access '\/etc\/systemd\/system\/trivy-server.service'[\s\S]*no such user/,
    )
    // Still down: the next try fails the same clear way, at the checksums file.
    const again = await install(['--yes'])
    expect(again.code).toBe(1)
    expect(again.json!.error!.message).toMatch(new RegExp(`cannot download http://${at('pkg')}:\\d+/v0\\.74\\.0/trivy_0\\.74\\.0_checksums\\.txt: curl: \\(7\\)`))
    await sandbox(['heal'])
  })

  it('fresh install (the rerun once the source is back) ends with a passing validate', async () => {
    const r = await install(['--yes'])
    expect(r.code, `${r.stderr}${r.stdout.slice(0, 3000)}`).toBe(0)
    const h = r.json!.hosts[0]!
    expect(h.applied.map((s) => s.id)).toEqual(['package', 'hold', 'user', 'cache-dir', 'env-file', 'unit', ...(ownNet() ? ['firewall'] : []), 'service'])
    expect(h.validate!.checks.filter((c) => c.status !== 'pass')).toEqual([])
    expect(h.validate!.checks.map((c) => c.name)).toEqual(expect.arrayContaining(['healthz via HAProxy', 'version trivy-0', 'db trivy-0', 'scan canary via HAProxy', 'auth via HAProxy']))
    expect(h.ok).toBe(true)
    // The generated token is in custody (0600) and is what the server accepts (validate used it).
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600)
    expect(token()).toMatch(/^[A-Za-z0-9_-]{43}$/)
    // The real dpkg path ran inside the host: package installed and held, nothing on the CI machine.
    expect(await host("dpkg-query -W -f='${db:Status-Want} ${db:Status-Status} ${Version}' trivy")).toBe('hold installed 0.74.0')
    expect((await execa('dpkg-query', ['-W', 'trivy'], { reject: false })).exitCode).not.toBe(0)
    expect(await host("getent passwd trivy | cut -d: -f7; passwd -S trivy | cut -d' ' -f2; stat -c '%U:%G %a' /var/lib/trivy /etc/trivy/trivy-server.env")).toBe('/usr/sbin/nologin\nL\ntrivy:trivy 750\nroot:root 600')
    const envText = await host('cat /etc/trivy/trivy-server.env')
    expect(envText).toContain(`TRIVY_TOKEN=${token()}`)
    expect(envText).not.toMatch(/SKIP_DB_UPDATE/)
    expect(await host('cat /etc/systemd/system/trivy-server.service')).toMatch(/NoNewPrivileges=true[\s\S]*ProtectSystem=strict[\s\S]*ReadWritePaths=\/var\/lib\/trivy[\s\S]*PrivateTmp=true/)
    // The server fetched its DB from the sandbox's mirror at its first start.
    expect(await host('journalctl -u trivy-server --no-pager -o cat')).toMatch(new RegExp(`Downloading artifact.*${at('registry')}:\\d+/aquasec/trivy-db:2`))
    const s = await labctl(['trivy', 'status', '--json'], { env })
    expect(s.exitCode, String(s.stdout)).toBe(0)
  })

  it('a second run reports no changes (and needs no confirmation)', async () => {
    const r = await install([])
    expect(r.code, r.stderr).toBe(0)
    const h = r.json!.hosts[0]!
    expect(changed(h)).toEqual([])
    expect(h.changes).toBe(0)
    expect(h.applied).toEqual([])
    expect(h.validate!.ok).toBe(true)
    const text = await labctl(['trivy', 'install', '--dry-run'], { env })
    expect(String(text.stdout)).toMatch(ownNet() ? /no changes, 8 up to date(?!,)/ : /no changes, 7 up to date, 1 skipped/)
  })

  it('drift is repaired: unit edited by hand, env file chmod 0644, service stopped', async () => {
    await host("sed -i 's/^NoNewPrivileges=true/NoNewPrivileges=false/; s/^ProtectSystem=strict/#ProtectSystem=strict/' /etc/systemd/system/trivy-server.service && chmod 0644 /etc/trivy/trivy-server.env && systemctl stop trivy-server")
    const plan = await install(['--dry-run'])
    const p = plan.json!.hosts[0]!
    expect(changed(p)).toEqual(['env-file', 'unit', 'service'])
    expect([...res(p, 'unit').diff!].sort()).toEqual(['+ NoNewPrivileges=true', '+ ProtectSystem=strict', '- #ProtectSystem=strict', '- NoNewPrivileges=false'])
    expect(res(p, 'env-file').diff).toEqual(['~ owner/mode root:root 0644 → root:root 0600'])
    expect(res(p, 'service')).toMatchObject({ current: 'enabled, inactive' })
    // Without --yes and without a terminal, nothing is applied.
    const noYes = await install([])
    expect(noYes.code).toBe(2)
    expect(noYes.json!.error!.message).toMatch(/confirmation needed/)
    const r = await install(['--yes'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.json!.hosts[0]!.applied.map((s) => s.id)).toEqual(['env-file', 'unit', 'service'])
    expect(r.json!.hosts[0]!.validate!.ok).toBe(true)
    expect(await host("stat -c '%a' /etc/trivy/trivy-server.env; grep -c '^NoNewPrivileges=true' /etc/systemd/system/trivy-server.service; systemctl is-active trivy-server")).toBe('600\n1\nactive')
    expect(changed((await install(['--dry-run'])).json!.hosts[0]!)).toEqual([])
  })

  it('version drift is refused without --upgrade, repaired with it', async () => {
    await sandbox(['break', 'version-drift'])
    const status = await labctl(['trivy', 'status', '--json'], { env })
    expect(status.exitCode).toBe(3)
    expect(parseJson<{ hosts: Array<{ installed: string; versionMatchesPin: boolean }> }>(String(status.stdout)).hosts[0]).toMatchObject({ installed: '0.73.0', versionMatchesPin: false })
    const refused = await install(['--yes'])
    expect(refused.code).toBe(1)
    expect(refused.json!.error).toMatchObject({ code: 'VERSION_DRIFT', message: expect.stringMatching(/reports 0\.73\.0, but the inventory pins 0\.74\.0; changing it needs --upgrade; nothing was changed/) })
    expect(await host('trivy --version')).toBe('Version: 0.73.0')
    // A pin of another version than the installed one is drift too.
    const pinned = parse(readFileSync(inventoryFile, 'utf8'))
    pinned.trivy.version = '0.75.0'
    const other = join(root, 'pin-0.75.0.yaml')
    writeFileSync(other, stringify(pinned))
    const dry = await install(['--config', other, '--dry-run'])
    expect(res(dry.json!.hosts[0]!, 'package')).toMatchObject({ action: 'refused', notes: [expect.stringMatching(/pins 0\.75\.0/)] })
    const up = await install(['--yes', '--upgrade'])
    expect(up.code, up.stderr).toBe(0)
    expect(up.json!.hosts[0]!.applied.map((s) => s.id)).toEqual(['package', 'service'])
    expect(await host('trivy --version | head -n1')).toBe('Version: 0.74.0')
    const after = await labctl(['trivy', 'status', '--json'], { env })
    expect(after.exitCode, String(after.stdout)).toBe(0)
    await sandbox(['heal'])
  })

  it('disk-full fault: the cache dir on a small full filesystem fails `trivy check`; heal undoes it', async () => {
    await sandbox(['break', 'disk-full'])
    const r = await labctl(['trivy', 'check', '--json'], { env })
    expect(r.exitCode).toBe(3)
    const disk = parseJson<{ checks: Array<{ check: string; status: string; detail: string }> }>(String(r.stdout)).checks.find((c) => c.check === 'disk')
    expect(disk).toMatchObject({ status: 'fail', detail: expect.stringMatching(/\/var\/lib\/trivy on \/var\/lib\/trivy: (9\d|100)\.\d% used/) })
    // On a filesystem of its own, install no longer warns about the mount.
    expect(res((await install(['--dry-run'])).json!.hosts[0]!, 'cache-dir').warnings ?? []).toEqual([])
    const v = await labctl(['trivy', 'validate', '--only', 'scan', '--json'], { env })
    expect(v.exitCode, 'the DB was copied onto the small filesystem: scans still work').toBe(0)
    await sandbox(['heal'])
    const ok = await labctl(['trivy', 'check', '--json'], { env })
    expect(parseJson<{ checks: Array<{ check: string; status: string }> }>(String(ok.stdout)).checks.find((c) => c.check === 'disk')!.status).toBe('pass')
  })

  it('--cloud-init renders user-data that passes the cloud-config schema check', async () => {
    const file = join(root, 'user-data.yaml')
    const r = await labctl(['trivy', 'install', '--cloud-init', file], { env })
    expect(r.exitCode, String(r.stderr)).toBe(0)
    expect(statSync(file).mode & 0o777).toBe(0o600)
    const text = readFileSync(file, 'utf8')
    const check = checkCloudConfig(text)
    expect(check.problems).toEqual([])
    const cfg = check.config!
    expect(cfg.users).toContainEqual(expect.objectContaining({ name: 'trivy', system: true, lock_passwd: true, shell: '/usr/sbin/nologin' }))
    const files = Object.fromEntries((cfg.write_files ?? []).map((f) => [f.path, f]))
    expect(files['/etc/trivy/trivy-server.env']).toMatchObject({ owner: 'root:root', permissions: '0600', content: expect.stringContaining(`TRIVY_TOKEN=${token()}`) })
    expect(files['/etc/systemd/system/trivy-server.service']!.content!.trimEnd()).toBe(await host('cat /etc/systemd/system/trivy-server.service'))
    // The embedded package script is valid shell, and runcmd calls it with the template and the pin.
    const script = join(root, 'install-trivy.sh')
    writeFileSync(script, files[CLOUD_INIT_SCRIPT]!.content!)
    expect((await execa('sh', ['-n', script], { reject: false })).exitCode).toBe(0)
    expect(cfg.runcmd![0]).toEqual([CLOUD_INIT_SCRIPT, parse(readFileSync(inventoryFile, 'utf8')).trivy.packageUrl, '0.74.0'])
    expect(cfg.runcmd).toContainEqual(['systemctl', 'enable', '--now', 'trivy-server'])
    // The check is a real one: a wrong type or an unknown key fails it.
    expect(text).toMatch(/permissions: ["']0600["']/)
    expect(checkCloudConfig(text.replace(/permissions: ["']0600["']/, 'permissions: 600')).ok).toBe(false)
    expect(checkCloudConfig(text.replace('write_files:', 'write_file:')).ok).toBe(false)
    expect(checkCloudConfig(text.replace('#cloud-config\n', '')).ok).toBe(false)
    if (which('cloud-init')) {
      const schema = await execa('cloud-init', ['schema', '--config-file', file], { reject: false })
      expect(schema.exitCode, String(schema.stdout) + String(schema.stderr)).toBe(0)
    }
  })

  it('--haproxy renders a backend and frontend rule that pass `haproxy -c` in a full config', async () => {
    const file = join(root, 'trivy-edge.cfg')
    const r = await labctl(['trivy', 'install', '--haproxy', file], { env })
    expect(r.exitCode, String(r.stderr)).toBe(0)
    const text = readFileSync(file, 'utf8')
    const lines = text.split('\n')
    const rules = lines.slice(lines.findIndex((l) => l.startsWith(HAPROXY_RULES_BEGIN)) + 1, lines.indexOf(HAPROXY_RULES_END)).map((l) => l.replace(/^#\s*/, '  '))
    expect(rules.join('\n')).toMatch(/acl trivy_vm_host .* -i trivy\.apps\.sandbox\.lab\.test\n\s+use_backend trivy-vm-be if trivy_vm_host/)
    const port = parse(readFileSync(inventoryFile, 'utf8')).trivy.hosts[0].listen
    expect(text).toContain(`server trivy-0 ${port} check`)
    const [bind] = await freePorts(1)
    const edge = `global\n  maxconn 64\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\nfrontend fe_https\n  bind 127.0.0.1:${bind} ssl crt ${join(sbDir, 'tls', 'public.pem')}\n${rules.join('\n')}\n  default_backend be_none\nbackend be_none\n  http-request return status 404\n`
    const haproxy = which('haproxy')!
    const full = join(root, 'full.cfg')
    writeFileSync(full, `${edge}\n${text}`)
    const c = await execa(haproxy, ['-c', '-f', full], { reject: false })
    expect(c.exitCode, String(c.stderr)).toBe(0)
    // The rendered file loads as is next to the edge's own config.
    const base = join(root, 'edge.cfg')
    writeFileSync(base, edge)
    expect((await execa(haproxy, ['-c', '-f', base, '-f', file], { reject: false })).exitCode).toBe(0)
    // And the check can fail: the rule without the rendered backend is refused.
    const broken = await execa(haproxy, ['-c', '-f', base], { reject: false })
    expect(broken.exitCode).not.toBe(0)
    expect(String(broken.stderr)).toMatch(/trivy-vm-be/)
    expect(existsSync(file)).toBe(true)
  })
})
