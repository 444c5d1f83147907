// The hostile-input suite, CLI level: the built labctl against hostile inventories, flags, token
// files, runbooks, HTTP servers and DNS responders on loopback. Each case asserts the whole contract
// (see harness.ts). Needs `npm run -s build` (dist/); needs no sandbox.
import { execFileSync } from 'node:child_process'
import { closeSync, mkdirSync, openSync, truncateSync, writeFileSync } from 'node:fs'
import { createServer, type AddressInfo, type Socket } from 'node:net'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { afterAll, beforeAll, describe, it } from 'vitest'
import { expectContract, file, inventory, runLabctl, TEST_TOKEN, WORK, type Expect } from './harness.js'
import { A, deadResolver, dnsResponder, httpServer, type DnsBehavior } from './responders.js'

type Case = Expect & { name: string; args: () => string[]; stdin?: string | Buffer; env?: NodeJS.ProcessEnv }
const closers: Array<() => Promise<void> | void> = []
afterAll(async () => {
  for (const c of closers) await c()
})

const inv = (name: string, o: Parameters<typeof inventory>[0] = {}): string => file(`${name}.yaml`, inventory(o))
const validateInv = (name: string, body: string): Case['args'] => () => ['config', 'validate', '--config', file(`${name}.yaml`, body)]
const badInv = (name: string, o: Parameters<typeof inventory>[0], match: RegExp, extra: Partial<Case> = {}): Case => ({ name, args: () => ['config', 'validate', '--config', inv(name.replace(/\W+/g, '-'), o)], code: 2, match, ...extra })

let fifoSilent = ''
let fifoTokenSilent = ''
const held: number[] = []
beforeAll(() => {
  const mk = (n: string): string => {
    const p = join(WORK, n)
    execFileSync('mkfifo', [p])
    return p
  }
  mk('nowriter.fifo')
  fifoSilent = mk('silent.fifo')
  fifoTokenSilent = mk('token-silent.fifo')
  // A writer that never writes: opened read-write so the open does not block.
  held.push(openSync(fifoSilent, 'r+'), openSync(fifoTokenSilent, 'r+'))
  mkdirSync(join(WORK, 'adir'), { recursive: true })
  const sparse = join(WORK, 'sparse.yaml')
  writeFileSync(sparse, '')
  truncateSync(sparse, 10 * 1024 ** 3)
  closers.push(() => held.forEach((fd) => closeSync(fd)))
})

const unknownKeys = (bytes: number): string => {
  const lines = [inventory().trimEnd()]
  let n = lines[0]!.length
  for (let i = 0; n < bytes; i++) {
    const l = `k${i}: 1`
    lines.push(l)
    n += l.length + 1
  }
  return `${lines.join('\n')}\n`
}
const aliasBomb = (): string => {
  const out = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
  for (const [p, c] of [['a', 'b'], ['b', 'c'], ['c', 'd'], ['d', 'e'], ['e', 'f'], ['f', 'g'], ['g', 'h']] as const) out.push(`${c}: &${c} [${Array(9).fill(`*${p}`).join(',')}]`)
  return `${out.join('\n')}\n`
}

// ---------------------------------------------------------------- inventories
const inventories: Case[] = [
  { name: 'inventory /dev/zero', args: () => ['config', 'validate', '--config', '/dev/zero'], code: 2, match: /character device/ },
  { name: 'inventory /dev/urandom', args: () => ['config', 'validate', '--config', '/dev/urandom'], code: 2, match: /character device/ },
  { name: 'inventory /proc file (size 0, content)', args: () => ['config', 'validate', '--config', '/proc/self/status'], code: 2, match: /unknown key|required key/ },
  { name: 'inventory FIFO without writer', args: () => ['config', 'validate', '--config', join(WORK, 'nowriter.fifo')], code: 2, match: /must be a YAML mapping/ },
  { name: 'inventory FIFO whose writer is silent', args: () => ['config', 'validate', '--config', fifoSilent], code: 2, match: /nothing more arrived within 2000 ms/ },
  { name: 'inventory is a directory', args: () => ['config', 'validate', '--config', join(WORK, 'adir')], code: 2, match: /is a directory/ },
  { name: 'inventory missing', args: () => ['config', 'validate', '--config', join(WORK, 'nope.yaml')], code: 2, match: /no such file/ },
  { name: 'inventory of 300 KiB', args: validateInv('big', `${inventory()}#${'x'.repeat(300 * 1024)}\n`), code: 2, match: /larger than 256 KiB/ },
  { name: 'inventory sparse 10 GiB', args: () => ['config', 'validate', '--config', join(WORK, 'sparse.yaml')], code: 2, match: /larger than 256 KiB/ },
  { name: 'inventory 10 MB of unknown keys (refused by size)', args: validateInv('unknown10m', unknownKeys(10 * 1024 * 1024)), code: 2, match: /larger than 256 KiB/ },
  { name: 'inventory 250 KiB of unknown keys: capped, linear', args: validateInv('unknown250k', unknownKeys(250 * 1024)), code: 2, match: /unknown key \(\+\d{4,} more problems\)[\s\S]*… and \d+ more problems/, withinMs: 30_000 },
  { name: 'inventory alias bomb', args: validateInv('bomb', aliasBomb()), code: 2, match: /alias bomb/ },
  { name: 'inventory 5000 duplicate keys', args: validateInv('dups', `${inventory()}${Array.from({ length: 5000 }, () => 'name: again').join('\n')}\n`), code: 2, match: /"name" is repeated/ },
  { name: 'inventory binary garbage', args: validateInv('garbage', Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 256)).toString('latin1')), code: 2, match: /YAML|mapping|unknown key|required/ },
  { name: 'inventory is a list', args: validateInv('list', '- a\n- b\n'), code: 2, match: /must be a YAML mapping/ },
  { name: 'inventory nested 20000 deep', args: validateInv('deep', `${'['.repeat(20000)}${']'.repeat(20000)}\n`), code: 2, match: /YAML|mapping|nest/ },
  { name: 'inventory with ESC and bidi in a key', args: validateInv('ctlkey', `${inventory()}"\u001b[2J\u202ebad": 1\n`), code: 2, match: /\\u\{1b\}\[2J\\u\{202e\}bad: unknown key/ },
  badInv('ssh.port 0', { host: '{name: trivy-0, fqdn: trivy-0.lab.test, ssh: {port: 0}}' }, /ssh\.port: a port is 1–65535/),
  badInv('ssh.port 70000', { host: '{name: trivy-0, fqdn: trivy-0.lab.test, ssh: {port: 70000}}' }, /ssh\.port: a port is 1–65535/),
  badInv('listen port 70000', { host: '{name: trivy-0, fqdn: trivy-0.lab.test, listen: "0.0.0.0:70000"}' }, /port 70000 is out of range/),
  badInv('listen port 0', { host: '{name: trivy-0, fqdn: trivy-0.lab.test, listen: "0.0.0.0:0"}' }, /port 0 is out of range/),
  badInv('dns server 999.1.1.1', { servers: ['999.1.1.1'] }, /"999\.1\.1\.1" is not a valid IP address/),
  badInv('dns server port 0', { servers: ['10.0.0.53:0'] }, /port 0 is out of range/),
  badInv('dns server port 70000', { servers: ['10.0.0.53:70000'] }, /port 70000 is out of range/),
  badInv('dns server given as a name', { servers: ['ns1.lab.test'] }, /is not a valid IP address/),
  badInv('fqdn 999.1.1.1 (not a name)', { host: '{name: trivy-0, fqdn: 999.1.1.1}' }, /fqdn: not a valid host name/),
  badInv('address 999.1.1.1', { host: '{name: trivy-0, fqdn: trivy-0.lab.test, address: 999.1.1.1}' }, /address: not a valid IPv4 or IPv6 address/),
  badInv('address with leading zeros', { host: '{name: trivy-0, fqdn: trivy-0.lab.test, address: 010.0.0.1}' }, /address: not a valid IPv4/),
  badInv('publicUrl with user:password@', { publicUrl: 'https://admin:S3cretPassw0rd@trivy.lab.test' }, /must not hold a user name or password/, { secrets: ['S3cretPassw0rd'] }),
  badInv('publicUrl with a path', { publicUrl: 'https://trivy.lab.test/trivy' }, /must not have a path \("\/trivy"\)/),
  badInv('publicUrl ftp scheme', { publicUrl: 'ftp://trivy.lab.test' }, /scheme ftp:\/\/ is not allowed/),
  badInv('publicUrl file scheme', { publicUrl: 'file:///etc/passwd' }, /scheme file:\/\/ is not allowed|has no host/),
  badInv('publicUrl with a query', { publicUrl: 'https://trivy.lab.test/?x=1' }, /must not have a query/),
  badInv('publicUrl short IPv4 1.2.3', { publicUrl: 'https://1.2.3' }, /"1\.2\.3" is not a valid host name or IP address/),
  badInv('publicUrl hex IPv4 0x7f.1', { publicUrl: 'https://0x7f.1' }, /not a valid host name or IP address/),
  badInv('publicUrl port 0', { publicUrl: 'https://trivy.lab.test:0' }, /port 0 is out of range/),
  badInv('debugUrl with a path', { host: '{name: trivy-0, fqdn: trivy-0.lab.test, debugUrl: "http://10.0.0.10:4954/x"}' }, /debugUrl: must not have a path/),
  badInv('jenkins url with user:password@', { extra: 'jenkins: {url: "https://bob:JenkinsPw99@ci.lab.test/"}' }, /jenkins\.url: must not hold a user name or password/, { secrets: ['JenkinsPw99'] }),
  badInv('jenkins url javascript:', { extra: 'jenkins: {url: "javascript:alert(1)"}' }, /jenkins\.url: must be a https:\/\/ or http:\/\/ URL/),
  badInv('packageUrl with user:password@', { trivy: '  packageUrl: "https://u:PkgPw77@mirror.lab.test/trivy_{version}_Linux-64bit.deb"' }, /packageUrl: must be an http\(s\) URL/, { secrets: ['PkgPw77'] }),
  badInv('cert warn below crit', { thresholds: '{certWarnDays: 5, certCritDays: 7}' }, /certWarnDays: must be greater than certCritDays/),
  badInv('cert warn equal to crit', { thresholds: '{certWarnDays: 7, certCritDays: 7}' }, /certWarnDays: must be greater than certCritDays/),
  badInv('disk warn above crit', { thresholds: '{diskWarnPercent: 95, diskCritPercent: 90}' }, /diskWarnPercent: must be lower than diskCritPercent/),
  badInv('dns timeout 1e23 ms', { timeoutMs: 1e23 }, /dns\.timeoutMs/),
  badInv('db freshness 1e23 h', { thresholds: '{dbFreshnessHours: 1e23}' }, /dbFreshnessHours/),
  badInv('ssh connect timeout 0', { host: '{name: trivy-0, fqdn: trivy-0.lab.test, ssh: {connectTimeoutMs: 0}}' }, /connectTimeoutMs/),
  badInv('jumpHost port 99999', { host: '{name: trivy-0, fqdn: trivy-0.lab.test, ssh: {jumpHost: "bastion.lab.test:99999"}}' }, /port 99999 is out of range/),
  badInv('allowlist 999.0.0.0/8', { trivy: '  allowlist: ["999.0.0.0/8"]' }, /not a valid IPv4\/IPv6 address or CIDR/),
  badInv('name with terminal escapes', { extra: 'description: "\u001b]0;pwned\u0007"\nname2: x' }, /name2: unknown key/),
]

// ---------------------------------------------------------------- flags
const okInv = (): string => inv('ok')
const flags: Case[] = [
  { name: '--timeout of 1e23 ms (digits)', args: () => ['trivy', 'status', '--config', okInv(), '--timeout', '100000000000000000000000'], code: 2, match: /less than or equal to 3600000/ },
  { name: '--timeout 0', args: () => ['trivy', 'status', '--config', okInv(), '--timeout', '0'], code: 2, match: /greater than or equal to 100/ },
  { name: '--timeout negative', args: () => ['trivy', 'status', '--config', okInv(), '--timeout=-5'], code: 2, match: /greater than or equal to 100/ },
  { name: '--timeout not a number', args: () => ['trivy', 'status', '--config', okInv(), '--timeout', '1e3'], code: 2, match: /Expected an integer/ },
  { name: 'validate --scan-timeout huge', args: () => ['trivy', 'validate', '--config', okInv(), '--scan-timeout', '99999999999'], code: 2, match: /less than or equal/ },
  { name: 'logs -n 0', args: () => ['trivy', 'logs', '--config', okInv(), '-n', '0'], code: 2, match: /greater than or equal to 1/ },
  { name: 'logs -n ten million', args: () => ['trivy', 'logs', '--config', okInv(), '-n', '10000000'], code: 2, match: /less than or equal to 100000/ },
  { name: 'reset-db --wait a day', args: () => ['trivy', 'reset-db', '--config', okInv(), '--wait', '86400'], code: 2, match: /less than or equal to 3600/ },
  { name: 'restart --wait 0', args: () => ['trivy', 'restart', '--config', okInv(), '--wait', '0'], code: 2, match: /greater than or equal to 1/ },
  { name: '--lab with terminal escapes', args: () => ['config', 'validate', '--lab', 'a\u001b[31mred\u202eb'], code: 2, match: /--lab "a\\u\{1b\}\[31mred\\u\{202e\}b" is not a lab name/ },
  { name: '--lab path traversal', args: () => ['config', 'validate', '--lab', '../../etc/passwd'], code: 2, match: /is not a lab name/ },
  { name: '--only unknown check', args: () => ['trivy', 'validate', '--config', okInv(), '--only', 'dns,bogus'], code: 2, match: /unknown check "bogus"/ },
  { name: '--junit in a missing directory', args: () => ['trivy', 'validate', '--config', okInv(), '--only', 'dns', '--junit', join(WORK, 'no', 'such', 'dir', 'r.xml')], code: 2, match: /--junit .*its directory .* does not exist/ },
  { name: '--junit on a device', args: () => ['trivy', 'validate', '--config', okInv(), '--only', 'dns', '--junit', '/dev/null'], code: 2, match: /it is a character device/ },
  { name: '--junit on a directory', args: () => ['trivy', 'validate', '--config', okInv(), '--only', 'dns', '--junit', join(WORK, 'adir')], code: 2, match: /it is a directory/ },
  { name: '--junit below a file', args: () => ['trivy', 'validate', '--config', okInv(), '--only', 'dns', '--junit', join(okInv(), 'r.xml')], code: 2, match: /is not a directory|does not exist|cannot be used/ },
  { name: '--prometheus in a missing directory (before connecting)', args: () => ['trivy', 'check', '--config', okInv(), '--prometheus', join(WORK, 'no', 'm.prom')], code: 2, match: /--prometheus .* does not exist/ },
  { name: '--haproxy in a missing directory', args: () => ['trivy', 'install', '--config', okInv(), '--haproxy', join(WORK, 'no', 'edge.cfg')], code: 2, match: /--haproxy .* does not exist/ },
  { name: '--haproxy on a device', args: () => ['trivy', 'install', '--config', okInv(), '--haproxy', '/dev/full'], code: 2, match: /character device/ },
  { name: 'exec with 3000 arguments', args: () => ['trivy', 'exec', '--config', okInv(), '--', ...Array.from({ length: 3000 }, (_, i) => `--a${i}`)], code: 2, match: /trivy command line is too long: 3000 arguments/ },
  { name: 'exec with one 70 KiB argument', args: () => ['trivy', 'exec', '--config', okInv(), '--', 'x'.repeat(70 * 1024)], code: 2, match: /trivy command line is too long/ },
  { name: 'exec with nothing to run', args: () => ['trivy', 'exec', '--config', okInv()], code: 2, match: /nothing to run/ },
  { name: 'unknown flag', args: () => ['trivy', 'validate', '--config', okInv(), '--frobnicate'], code: 2, match: /Nonexistent flag|frobnicate/ },
]

// ---------------------------------------------------------------- token files (validate loads the token before any check)
const tok = (args: string[]): string[] => ['trivy', 'validate', '--config', okInv(), '--only', 'auth', ...args]
const tokens: Case[] = [
  { name: 'token file /dev/zero', args: () => tok(['--token-file', '/dev/zero']), code: 2, match: /character device/ },
  { name: 'token file with a NUL byte', args: () => tok(['--token-file', file('nul.tok', `${TEST_TOKEN}\0tail`)]), code: 1, match: /contains a NUL byte/ },
  { name: 'token file missing names that file', args: () => tok(['--token-file', join(WORK, 'missing.tok')]), code: 1, match: /missing\.tok does not exist/ },
  { name: 'token file of two lines', args: () => tok(['--token-file', file('two.tok', `${TEST_TOKEN}\nsecond\n`)]), code: 1, match: /more than one line/ },
  { name: 'token file empty', args: () => tok(['--token-file', file('empty.tok', '\n')]), code: 1, match: /is empty/ },
  { name: 'token file of 1 MiB', args: () => tok(['--token-file', file('huge.tok', 'a'.repeat(1024 * 1024))]), code: 2, match: /larger than 4 KiB/ },
  { name: 'token file is a directory', args: () => tok(['--token-file', join(WORK, 'adir')]), code: 2, match: /is a directory/ },
  { name: 'token from stdin, 10 MB', args: () => tok(['--token-file', '-']), stdin: Buffer.alloc(10 * 1024 * 1024, 0x61), code: 2, match: /token file stdin: larger than 4 KiB/ },
  { name: 'token with terminal escapes', args: () => tok(['--token-file', file('esc.tok', `${TEST_TOKEN}\u001b[2J`)]), code: 1, match: /contains control characters/ },
  { name: 'token FIFO whose writer is silent', args: () => tok(['--token-file', fifoTokenSilent]), code: 2, match: /nothing more arrived/ },
  { name: 'caBundle /dev/zero', args: () => ['trivy', 'validate', '--config', inv('ca-zero', { trivy: '  caBundle: /dev/zero' }), '--only', 'healthz'], code: 2, match: /CA bundle \/dev\/zero: is a character device/ },
  { name: 'caBundle missing', args: () => ['trivy', 'validate', '--config', inv('ca-missing', { trivy: `  caBundle: ${join(WORK, 'nope.pem')}` }), '--only', 'healthz'], code: 2, match: /CA bundle .*nope\.pem: no such file/ },
]

// ---------------------------------------------------------------- runbooks
const runbooks: Case[] = [
  { name: 'runbook /dev/zero', args: () => ['runbook', 'show', '/dev/zero'], code: 2, match: /character device/ },
  { name: 'runbook alias bomb', args: () => ['runbook', 'show', file('bomb-rb.yaml', aliasBomb())], code: 2, match: /alias bomb|Excessive alias count/ },
  { name: 'runbook of 600 KiB', args: () => ['runbook', 'show', file('big-rb.yaml', `name: big\n#${'x'.repeat(600 * 1024)}\n`)], code: 2, match: /larger than 512 KiB/ },
  { name: 'runbook missing', args: () => ['runbook', 'show', join(WORK, 'missing-rb.yaml')], code: 2, match: /no such file/ },
  { name: 'runbook is a directory', args: () => ['runbook', 'show', `${join(WORK, 'adir')}/`], code: 2, match: /is a directory/ },
  { name: 'runbook binary garbage', args: () => ['runbook', 'show', file('garbage-rb.yaml', Buffer.from(Array.from({ length: 2048 }, (_, i) => (i * 131) % 256)))], code: 2, match: /YAML|mapping|runbook/ },
  { name: 'runbook of 400 KiB of unknown keys: capped, linear', args: () => ['runbook', 'show', file('unknown-rb.yaml', `name: unknown-rb\n${Array.from({ length: 40_000 }, (_, i) => `k${i}: 1`).join('\n')}\n`)], code: 2, match: /\(\+\d{4,} more problems\)[\s\S]*… and \d+ more problems/, withinMs: 30_000 },
  { name: 'runbook with 5000 duplicate keys', args: () => ['runbook', 'show', file('dups-rb.yaml', `${Array.from({ length: 5000 }, () => 'name: again').join('\n')}\n`)], code: 2, match: /"name" is repeated/ },
  { name: 'runbook name with terminal escapes', args: () => ['runbook', 'show', 'db\u001b[31m-stale'], code: 2, match: /not a runbook name/ },
]

// ---------------------------------------------------------------- air-gap files (registry auth, OCI layouts)
const bigLayout = (): string => {
  const d = join(WORK, 'big-layout')
  mkdirSync(d, { recursive: true })
  file('big-layout/oci-layout', '{"imageLayoutVersion":"1.0.0"}')
  file('big-layout/index.json', `{"schemaVersion":2,"manifests":[],"pad":"${'x'.repeat(5 * 1024 * 1024)}"}`)
  return d
}
const dbCases: Case[] = [
  { name: 'REGISTRY_AUTH_FILE=/dev/zero', args: () => ['trivy', 'db', 'mirror', '--config', okInv(), '--to-dir', join(WORK, 'mirror-out'), '--dry-run'], env: { REGISTRY_AUTH_FILE: '/dev/zero' }, code: 2, match: /registry auth file \/dev\/zero: is a character device/ },
  { name: 'REGISTRY_AUTH_FILE of 2 MiB', args: () => ['trivy', 'db', 'mirror', '--config', okInv(), '--to-dir', join(WORK, 'mirror-out'), '--dry-run'], env: { REGISTRY_AUTH_FILE: file('big-auth.json', `{"auths":{},"pad":"${'y'.repeat(2 * 1024 * 1024)}"}`) }, code: 2, match: /registry auth file .*larger than 1 MiB/ },
  { name: 'db load --from-dir with a 5 MiB index.json', args: () => ['trivy', 'db', 'load', '--config', okInv(), '--from-dir', bigLayout(), '--dry-run'], code: 2, match: /OCI layout index .*index\.json: larger than 4 MiB/ },
]

// ---------------------------------------------------------------- hostile HTTP servers (validate --only healthz,version)
type Srv = { url: string }
const servers: { [k: string]: Srv } = {}
beforeAll(async () => {
  const mk = async (k: string, h: Parameters<typeof httpServer>[0]): Promise<void> => {
    const s = await httpServer(h)
    servers[k] = s
    closers.push(s.close)
  }
  await mk('huge', (_req, res) => {
    res.writeHead(500, { 'content-type': 'text/plain' })
    const chunk = Buffer.alloc(64 * 1024, 0x41)
    let sent = 0
    const pump = (): void => {
      while (sent < 100 * 1024 * 1024 && res.write(chunk)) sent += chunk.length
      if (sent < 100 * 1024 * 1024) res.once('drain', pump)
      else res.end()
    }
    res.on('error', () => {})
    pump()
  })
  const bomb = gzipSync(Buffer.alloc(64 * 1024 * 1024))
  await mk('gzip', (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' })
    res.end(bomb)
  })
  await mk('redirect', (_req, res) => {
    res.writeHead(302, { location: 'http://evil.example/steal' })
    res.end()
  })
  await mk('hang', () => {})
  await mk('drip', (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    const t = setInterval(() => res.write(' '), 100)
    res.on('close', () => clearInterval(t))
  })
  await mk('garbage', (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end('{"Version": [[[[ not json')
  })
  await mk('escapes', (_req, res) => {
    res.writeHead(500, { 'content-type': 'text/plain' })
    res.end('oops \u001b[2J\u001b]0;owned\u0007 \u202eevil')
  })
  await mk('reset', (req) => req.socket.destroy())
})
// Hostile TLS peers on the public URL's port: plain HTTP, garbage, an immediate close, silence.
const tlsPorts: { [k: string]: number } = {}
beforeAll(async () => {
  const conns = new Set<Socket>()
  const peers: Array<[string, (s: Socket) => void]> = [
    ['plain-http', (c) => c.end('HTTP/1.1 400 Bad Request\r\n\r\n')],
    ['garbage', (c) => c.end(Buffer.alloc(4096, 0xff))],
    ['close', (c) => c.destroy()],
    ['silent', () => {}],
  ]
  for (const [k, onConn] of peers) {
    const srv = createServer((c) => {
      conns.add(c)
      c.on('error', () => {})
      onConn(c)
    })
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()))
    tlsPorts[k] = (srv.address() as AddressInfo).port
    closers.push(() => {
      for (const c of conns) c.destroy()
      return new Promise<void>((r) => srv.close(() => r()))
    })
  }
})
const tls = (k: string, match: RegExp): Case => ({
  name: `TLS peer: ${k}`,
  args: () => ['trivy', 'validate', '--config', inv(`tls-${k}`, { publicUrl: `https://127.0.0.1:${tlsPorts[k]}` }), '--only', 'tls,healthz', '--timeout', '1500'],
  code: 3,
  match,
  withinMs: 20_000,
})
const tlsCases: Case[] = [tls('plain-http', /tls|TLS|SSL/), tls('garbage', /tls|TLS|SSL/), tls('close', /tls|TLS|socket|closed/i), tls('silent', /timeout|timed out|no answer/i)]

const http = (k: string, match: RegExp, extra: Partial<Case> = {}): Case => ({
  name: `HTTP server: ${k}`,
  args: () => ['trivy', 'validate', '--config', inv(`http-${k}`, { publicUrl: servers[k]!.url }), '--only', 'healthz,version', '--timeout', '1500', '--insecure'],
  code: 3,
  match,
  withinMs: 20_000,
  ...extra,
})
const httpCases: Case[] = [
  http('huge', /larger than \d+ bytes|HTTP 500/),
  http('gzip', /decompresses to more than \d+ bytes/),
  http('redirect', /HTTP 302 redirect to http:\/\/evil\.example\/steal/),
  http('hang', /timed out|no answer/),
  http('drip', /timed out|no answer/),
  http('garbage', /not JSON|unreadable|invalid|JSON/i),
  http('escapes', /HTTP 500/),
  http('reset', /connection reset|socket|closed/i),
]

// ---------------------------------------------------------------- hostile DNS responders (validate --only dns)
const dnsSrv: { [k: string]: string } = {}
beforeAll(async () => {
  const mk = async (k: string, b: DnsBehavior, tcp?: DnsBehavior | 'hang'): Promise<void> => {
    const r = await dnsResponder(b, tcp)
    dnsSrv[k] = r.server
    closers.push(r.close)
  }
  await mk('foreign', (q) => ({ answers: q.type === A ? [{ name: 'evil.example', type: A, address: '6.6.6.6' }] : [] }))
  await mk('badid', (q) => ({ id: (q.id + 1) % 65536, answers: [{ name: q.name, type: A, address: '6.6.6.6' }] }))
  await mk('good', (q) => ({ answers: q.type === A ? [{ name: q.name, type: A, address: '10.0.0.10' }] : [] }))
  await mk('tchang', () => ({ tc: true }), 'hang')
  await mk('otherq', () => ({ qname: 'other.example' }))
  const dead = await deadResolver()
  dnsSrv.dead = dead.server
  closers.push(dead.close)
})
const dns = (name: string, srv: () => string[], code: number, match: RegExp): Case => ({
  name: `DNS: ${name}`,
  args: () => ['trivy', 'validate', '--config', inv(`dns-${name.replace(/\W+/g, '-')}`, { servers: srv(), timeoutMs: 500 }), '--only', 'dns'],
  code,
  match,
  withinMs: 20_000,
})
const dnsCases: Case[] = [
  dns('records for another name', () => [dnsSrv.foreign!], 3, /DNS answer does not match the question: .*another name \(evil\.example/),
  dns('wrong transaction ID', () => [dnsSrv.badid!], 3, /transaction ID \d+ does not match/),
  dns('answer to another question', () => [dnsSrv.otherq!], 3, /another question/),
  dns('dead first resolver is a named warning', () => [dnsSrv.dead!, dnsSrv.good!], 0, /DNS server 127\.0\.0\.1:\d+ gave no usable answer: no answer from/),
  dns('all resolvers dead', () => [dnsSrv.dead!], 3, /DNS timeout: no answer from 127\.0\.0\.1:\d+ within 500 ms/),
  dns('truncated answer, TCP retry hangs', () => [dnsSrv.tchang!], 3, /TCP retry .* within the DNS timeout/),
]

describe.concurrent('hostile input, CLI', () => {
  for (const c of [...inventories, ...flags, ...tokens, ...runbooks, ...dbCases, ...tlsCases, ...httpCases, ...dnsCases]) {
    it(c.name, async () => {
      const r = await runLabctl(c.args(), { ...(c.stdin ? { stdin: c.stdin } : {}), ...(c.env ? { env: c.env } : {}), killAfterMs: (c.withinMs ?? 15_000) + 5000 })
      expectContract(r, c)
    })
  }
})
