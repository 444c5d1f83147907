// What `labctl trivy install` wants on a scanner host, as text: the package source, the env file, the
// systemd unit, the firewall rules and the HAProxy route. Pure functions, shared by the SSH install, the
// cloud-init renderer and the tests.
import { isIP } from 'node:net'
import { UsageError } from '../errors.js'
import type { Inventory, ScannerHost } from '../inventory/schema.js'
import { QUIET_TRIVY_ENV, quietTrivyPairs } from './quiet.js'
import { fingerprint } from './token.js'
import { REDACTED, redactUserinfo } from '../redact.js'
import { cacheBackendWithPassword } from '../redis/secret.js'

/** Aqua's release asset, per version; {arch} is the release's name for the host's architecture. */
export const DEFAULT_PACKAGE_URL = 'https://github.com/aquasecurity/trivy/releases/download/v{version}/trivy_{version}_Linux-{arch}.deb'

/** dpkg architecture → the suffix of Aqua's release asset names (trivy_X_Linux-64bit.deb, …). */
export const RELEASE_ARCH: Record<string, string> = { amd64: '64bit', arm64: 'ARM64', i386: '32bit', armhf: 'ARM', ppc64el: 'PPC64LE', s390x: 's390x' }

export type PackageSource = { template: string; url: string; checksumsUrl: string; file: string }

/** The .deb URL, its file name and the checksums file next to it (trivy_{version}_checksums.txt). */
export function packageSource(inv: Inventory, dpkgArch?: string): PackageSource {
  const template = inv.trivy.packageUrl ?? DEFAULT_PACKAGE_URL
  const v = inv.trivy.version
  const arch = dpkgArch ? (RELEASE_ARCH[dpkgArch] ?? dpkgArch) : '{arch}'
  const url = template.replaceAll('{version}', v).replaceAll('{arch}', arch)
  const dir = url.slice(0, url.lastIndexOf('/') + 1)
  return { template, url, checksumsUrl: `${dir}trivy_${v}_checksums.txt`, file: url.slice(url.lastIndexOf('/') + 1) }
}

/**
 * Installs exactly one version of the trivy .deb on the host, as root: download the checksums file and
 * the .deb into a private temp dir, verify the sha256 and the package's name and version, then dpkg -i
 * and hold. Nothing is installed unless every check passed; the temp dir is always removed. Errors are
 * one line on stderr ("labctl-install: …"). Arguments: URL template, version.
 */
export const PACKAGE_SCRIPT = `set -u
tpl=$1 ver=$2
fail() { code=$1; shift; printf 'labctl-install: %s\\n' "$*" >&2; exit "$code"; }
a=$(dpkg --print-architecture 2>/dev/null) || fail 20 "dpkg is not available: this is not a Debian/Ubuntu host"
case "$a" in amd64) ra=64bit ;; arm64) ra=ARM64 ;; i386) ra=32bit ;; armhf) ra=ARM ;; ppc64el) ra=PPC64LE ;; *) ra=$a ;; esac
url=$(printf '%s' "$tpl" | sed -e "s/{version}/$ver/g" -e "s/{arch}/$ra/g")
file=\${url##*/}
sums="\${url%/*}/trivy_\${ver}_checksums.txt"
tmp=$(mktemp -d /var/tmp/labctl-trivy.XXXXXXXX) || fail 21 "cannot create a temp dir in /var/tmp"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM HUP
fetch() {
  if command -v curl >/dev/null 2>&1; then curl -fsSL --connect-timeout 15 --max-time 900 --retry 2 --retry-delay 1 --retry-connrefused -o "$2" "$1" 2>"$tmp/err"
  elif command -v wget >/dev/null 2>&1; then wget -q -T 15 -t 3 -O "$2" "$1" 2>"$tmp/err"
  else echo "neither curl nor wget is installed" >"$tmp/err"; return 1; fi
}
why() { tail -n 1 "$tmp/err"; }
fetch "$sums" "$tmp/checksums.txt" || fail 10 "cannot download $sums: $(why)"
fetch "$url" "$tmp/$file" || fail 11 "cannot download $url: $(why) (the package source went away during the download?)"
want=$(awk -v f="$file" '$2 == f || $2 == "*" f { print $1; exit }' "$tmp/checksums.txt")
[ -n "$want" ] || fail 12 "$file is not listed in $sums"
got=$(sha256sum "$tmp/$file" | cut -d' ' -f1)
[ "$got" = "$want" ] || fail 13 "checksum mismatch for $file: sha256 $got, but $sums lists $want (incomplete or tampered download)"
pkg=$(dpkg-deb -f "$tmp/$file" Package 2>/dev/null); v=$(dpkg-deb -f "$tmp/$file" Version 2>/dev/null)
[ "$pkg" = trivy ] && [ "$v" = "$ver" ] || fail 14 "$file is package '$pkg' version '$v', expected trivy $ver"
DEBIAN_FRONTEND=noninteractive dpkg -i "$tmp/$file" >"$tmp/dpkg.log" 2>&1 || fail 15 "dpkg -i $file failed: $(tail -n 3 "$tmp/dpkg.log" | tr '\\n' ' ')"
if command -v apt-mark >/dev/null 2>&1; then apt-mark hold trivy >/dev/null; else echo 'trivy hold' | dpkg --set-selections; fi || fail 16 "cannot hold the trivy package"
echo "installed trivy $ver from $url (sha256 $got)"
`

/** HOST:PORT of `trivy server --listen` → its port. */
export function listenPort(listen: string): number {
  return Number(listen.slice(listen.lastIndexOf(':') + 1))
}

/** Where the server answers on the host itself: a wildcard listen is probed on loopback. */
export function listenProbe(listen: string): string {
  const host = listen.slice(0, listen.lastIndexOf(':')).replace(/^\[|\]$/g, '')
  const port = listenPort(listen)
  const addr = host === '' || host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host
  return `${isIP(addr) === 6 ? `[${addr}]` : addr}:${port}`
}

// ---------------------------------------------------------------- env file

/** Every key `trivy install` owns in the env file; other lines of an existing file are kept. */
export const MANAGED_ENV_KEYS = [
  'TRIVY_TOKEN',
  'TRIVY_TOKEN_HEADER',
  'TRIVY_LISTEN',
  'TRIVY_CACHE_DIR',
  'TRIVY_CACHE_BACKEND',
  'TRIVY_CACHE_TTL',
  'TRIVY_DB_REPOSITORY',
  ...Object.keys(QUIET_TRIVY_ENV),
] as readonly string[]

/** The managed settings in file order. The server reads them as its flags (TRIVY_LISTEN = --listen, …). */
export function desiredEnv(inv: Inventory, host: ScannerHost, token: string, secrets: { redisPassword?: string | undefined } = {}): Array<[string, string]> {
  const t = inv.trivy
  const env: Array<[string, string]> = [
    ['TRIVY_TOKEN', token],
    ['TRIVY_TOKEN_HEADER', t.tokenHeader],
    ['TRIVY_LISTEN', host.listen],
    ['TRIVY_CACHE_DIR', t.cacheDir],
    // A Redis password (the secrets dir's redis-password) rides only in this 0600 file, never in argv.
    ['TRIVY_CACHE_BACKEND', cacheBackendWithPassword(t.cacheBackend, secrets.redisPassword)],
    ...(t.cacheTtl ? ([['TRIVY_CACHE_TTL', t.cacheTtl]] as Array<[string, string]>) : []),
    ...(t.dbRepositories.length ? ([['TRIVY_DB_REPOSITORY', t.dbRepositories.join(',')]] as Array<[string, string]>) : []),
    // Never phone home: no version check, no telemetry (the one quiet-trivy list).
    ...quietTrivyPairs(),
  ]
  for (const [k, v] of env) {
    // systemd's EnvironmentFile= would need quoting for these; the inventory never needs them.
    if (!v || /[\s"'\\$`]/.test(v)) throw new UsageError(`${k} would be "${k === 'TRIVY_TOKEN' ? REDACTED : redactUserinfo(v)}": values with spaces, quotes, backslashes or $ are not supported in ${t.envFile}`, { suggestion: 'fix the inventory value' })
  }
  return env
}

const KEY_RE = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=/

/**
 * The env file after the install: an existing file's own lines stay where they are, the managed keys get
 * the desired values (duplicates dropped, a managed key no longer wanted removed), missing ones appended.
 * merge(merge(x)) = merge(x), so a second install changes nothing.
 */
export function mergeEnv(current: string | undefined, desired: Array<[string, string]>, header: string): string {
  const want = new Map(desired)
  const managed = new Set<string>(MANAGED_ENV_KEYS)
  if (!current || !current.trim()) return `${header}${desired.map(([k, v]) => `${k}=${v}`).join('\n')}\n`
  const out: string[] = []
  const seen = new Set<string>()
  for (const line of current.replace(/\n$/, '').split('\n')) {
    const key = KEY_RE.exec(line)?.[1]
    if (key && managed.has(key)) {
      if (seen.has(key)) continue
      seen.add(key)
      if (want.has(key)) out.push(`${key}=${want.get(key)}`)
    } else out.push(line)
  }
  for (const [k, v] of desired) if (!seen.has(k)) out.push(`${k}=${v}`)
  return `${out.join('\n')}\n`
}

/** Keys of an env file's lines that labctl does not manage (reported as kept). */
export function unmanagedKeys(text: string | undefined): string[] {
  const managed = new Set<string>(MANAGED_ENV_KEYS)
  return (text ?? '').split('\n').map((l) => KEY_RE.exec(l)?.[1]).filter((k): k is string => Boolean(k) && !managed.has(k!))
}


/** An env file safe to show: secrets replaced by their fingerprint, passwords in URLs masked. */
export function maskEnv(text: string): string {
  return text
    .split('\n')
    .map((line) => {
      const m = /^(\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=)(.*)$/.exec(line)
      if (!m) return line
      const [, lhs, key, value] = m as unknown as [string, string, string, string]
      if (/TOKEN$|PASSWORD|SECRET|_KEY$/.test(key) && !/HEADER$/.test(key)) return `${lhs}${REDACTED} (${fingerprint(value)})`
      return `${lhs}${redactUserinfo(value)}`
    })
    .join('\n')
}

// ---------------------------------------------------------------- systemd unit

export function unitPath(inv: Inventory): string {
  const name = inv.trivy.serviceName.endsWith('.service') ? inv.trivy.serviceName : `${inv.trivy.serviceName}.service`
  return `/etc/systemd/system/${name}`
}

/**
 * The sandboxing every labctl-managed unit gets (the Trivy server and the exporter): read-only system,
 * no home, no devices, no privilege gain. `readWritePaths` are the only writable places.
 */
export function hardeningDirectives(readWritePaths: string[]): string[] {
  return [
    'NoNewPrivileges=true',
    'ProtectSystem=strict',
    ...(readWritePaths.length ? [`ReadWritePaths=${readWritePaths.join(' ')}`] : []),
    'PrivateTmp=true',
    'ProtectHome=true',
    'PrivateDevices=true',
    'ProtectKernelTunables=true',
    'ProtectKernelModules=true',
    'ProtectControlGroups=true',
    'RestrictSUIDSGID=true',
    'LockPersonality=true',
    'UMask=0027',
  ]
}

export type ServiceUnit = {
  /** Comment lines at the top, each starting with "#". */
  header: string[]
  description: string
  documentation?: string
  user: string
  /** [Service] lines before the hardening (ExecStart=, Restart=, …) and after it (limits, extra sandboxing). */
  service: string[]
  readWritePaths: string[]
  after?: string[]
}

/** A simple service unit with labctl's hardening, for every unit labctl renders (Trivy, the exporter). */
export function renderServiceUnit(u: ServiceUnit): string {
  return [
    ...u.header,
    '[Unit]',
    `Description=${u.description}`,
    ...(u.documentation ? [`Documentation=${u.documentation}`] : []),
    'Wants=network-online.target',
    'After=network-online.target',
    '',
    '[Service]',
    'Type=simple',
    `User=${u.user}`,
    `Group=${u.user}`,
    ...u.service,
    ...hardeningDirectives(u.readWritePaths),
    ...(u.after ?? []),
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n')
}

/** The hardened unit: settings come from the EnvironmentFile (root 0600), so argv shows no secret. */
export function renderUnit(inv: Inventory): string {
  const t = inv.trivy
  return renderServiceUnit({
    header: [`# Managed by \`labctl trivy install\` (lab ${inv.name}): edits by hand are reverted by the next install.`],
    description: `Trivy vulnerability scanner server (trivy server, pinned ${t.version})`,
    documentation: 'https://trivy.dev/',
    user: t.serviceUser,
    service: [`EnvironmentFile=${t.envFile}`, 'ExecStart=/usr/bin/trivy server', 'Restart=on-failure', 'RestartSec=5', 'TimeoutStopSec=30'],
    readWritePaths: [t.cacheDir],
    after: ['LimitNOFILE=65536'],
  })
}

/** A line diff (LCS): "- old" and "+ new" lines, unchanged lines left out. */
export function lineDiff(before: string, after: string): string[] {
  const a = before === '' ? [] : before.replace(/\n$/, '').split('\n')
  const b = after === '' ? [] : after.replace(/\n$/, '').split('\n')
  const n = a.length
  const m = b.length
  const lcs: number[][] = Array.from({ length: n + 1 }, () => new Array<number>(m + 1).fill(0))
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) lcs[i]![j] = a[i] === b[j] ? lcs[i + 1]![j + 1]! + 1 : Math.max(lcs[i + 1]![j]!, lcs[i]![j + 1]!)
  const out: string[] = []
  let i = 0
  let j = 0
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) {
      i++
      j++
    } else if (i < n && (j >= m || lcs[i + 1]![j]! >= lcs[i]![j + 1]!)) out.push(`- ${a[i++]}`)
    else out.push(`+ ${b[j++]}`)
  }
  return out
}

// ---------------------------------------------------------------- firewall

export type FirewallSpec = { port: number; sources: string[] }
export const UFW_COMMENT = 'labctl-trivy'
export const NFT_TABLE = 'labctl_trivy'
export const NFT_FILE = '/etc/nftables.d/labctl-trivy.nft'

/** ufw rules (arguments after `ufw`), allows first: ufw matches in order. */
export function ufwRules(spec: FirewallSpec): string[][] {
  return [
    ...spec.sources.map((s) => ['allow', 'from', s, 'to', 'any', 'port', String(spec.port), 'proto', 'tcp', 'comment', UFW_COMMENT]),
    ['deny', 'to', 'any', 'port', String(spec.port), 'proto', 'tcp', 'comment', UFW_COMMENT],
  ]
}

/** Parses `ufw show added` lines carrying our comment into comparable "allow SRC PORT" / "deny any PORT" keys. */
export function parseUfwAdded(text: string): string[] {
  const keys: string[] = []
  for (const line of text.split('\n')) {
    if (!line.includes(`comment '${UFW_COMMENT}'`)) continue
    const m = /^ufw\s+(allow|deny)(?:\s+in)?\s+(?:proto\s+tcp\s+)?(?:from\s+(\S+)\s+)?(?:to\s+any\s+port\s+(\d+)|(\d+)\/tcp)/.exec(line.trim())
    if (m) keys.push(`${m[1]} ${m[2] ?? 'any'} ${m[3] ?? m[4]}`)
    else keys.push(`unparsed ${line.trim()}`)
  }
  return keys.sort()
}

export function ufwKeys(spec: FirewallSpec): string[] {
  return [...spec.sources.map((s) => `allow ${s} ${spec.port}`), `deny any ${spec.port}`].sort()
}

/** An nftables table of our own: the port open to the sources (and loopback), dropped for the rest. */
export function nftRuleset(spec: FirewallSpec): string {
  const v4 = spec.sources.filter((s) => !s.includes(':'))
  const v6 = spec.sources.filter((s) => s.includes(':'))
  const lines = [
    `# Managed by \`labctl trivy install\`: the Trivy listener port ${spec.port}, open only to HAProxy and the allowlist.`,
    `table inet ${NFT_TABLE}`,
    `delete table inet ${NFT_TABLE}`,
    `table inet ${NFT_TABLE} {`,
    '  chain input {',
    '    type filter hook input priority -10; policy accept;',
    `    iif "lo" tcp dport ${spec.port} accept`,
    ...(v4.length ? [`    ip saddr { ${v4.join(', ')} } tcp dport ${spec.port} accept`] : []),
    ...(v6.length ? [`    ip6 saddr { ${v6.join(', ')} } tcp dport ${spec.port} accept`] : []),
    `    tcp dport ${spec.port} counter drop`,
    '  }',
    '}',
  ]
  return `${lines.join('\n')}\n`
}

// ---------------------------------------------------------------- HAProxy

export const HAPROXY_BACKEND = 'trivy-vm-be'
export const HAPROXY_RULES_BEGIN = '# >>> frontend rules'
export const HAPROXY_RULES_END = '# <<< frontend rules'

/** The address HAProxy connects to: the listen address, or the host's address/FQDN for a wildcard listen. */
export function backendAddress(host: ScannerHost): string {
  const h = host.listen.slice(0, host.listen.lastIndexOf(':')).replace(/^\[|\]$/g, '')
  const addr = h === '' || h === '0.0.0.0' || h === '::' ? (host.address ?? host.fqdn) : h
  return `${isIP(addr) === 6 ? `[${addr}]` : addr}:${listenPort(host.listen)}`
}

export function haproxyFrontendRules(inv: Inventory): string[] {
  const name = new URL(inv.trivy.publicUrl).hostname
  return [`acl trivy_vm_host req.hdr(host),field(1,:) -i ${name}`, `use_backend ${HAPROXY_BACKEND} if trivy_vm_host`]
}

/** Where the edge's HAProxy serves its own Prometheus metrics (scraped as job "haproxy-edge"). */
export const HAPROXY_METRICS_BIND = '127.0.0.1:8405'

/**
 * The HAProxy edge's part: the frontend rule for the public name (to paste), the backend and a metrics
 * frontend with HAProxy's built-in Prometheus exporter (both loadable as is).
 */
export function renderHaproxy(inv: Inventory, hosts: ScannerHost[], opts: { metricsBind?: string } = {}): string {
  const name = new URL(inv.trivy.publicUrl).hostname
  return `# Rendered by \`labctl trivy install --haproxy\` (lab ${inv.name}): the Trivy scanner on the HAProxy edge.
# 1. In the frontend that terminates TLS for ${name}, add these rules (uncommented):
${HAPROXY_RULES_BEGIN} for ${name}
${haproxyFrontendRules(inv).map((l) => `#   ${l}`).join('\n')}
${HAPROXY_RULES_END}
# 2. The host-specific backend below; this file can be loaded as is (\`haproxy -f edge.cfg -f this-file\`).

backend ${HAPROXY_BACKEND}
  mode http
  option httpchk GET /healthz
  http-check expect string ok
  default-server inter 2s fall 3 rise 2
  # scans of big images take time; /healthz and /version are unauthenticated, scans carry ${inv.trivy.tokenHeader}
  timeout server 300s
${hosts.map((h) => `  server ${h.name} ${backendAddress(h)} check`).join('\n')}

# 3. HAProxy's own Prometheus exporter (haproxy_backend_http_responses_total{proxy="${HAPROXY_BACKEND}",code="5xx"}
#    feeds the TrivyEdge5xxRateHigh alert of monitoring/labctl-trivy.rules.yml). Bind it where the
#    monitoring node reaches it, and let only that node through the edge firewall.
frontend labctl-edge-metrics
  mode http
  bind ${opts.metricsBind ?? HAPROXY_METRICS_BIND}
  no log
  http-request use-service prometheus-exporter if { path /metrics }
  http-request return status 404 content-type text/plain string "metrics are at /metrics" if !{ path /metrics }
`
}
