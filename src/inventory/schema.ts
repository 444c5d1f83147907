import { isIPv4, isIPv6 } from 'node:net'
import { z } from 'zod'

// One rule per kind of value. Every field of that kind, and every CLI flag of that kind, uses it.

/** Ranges shared by the inventory and the CLI flags (commands/ use these for min/max). */
export const LIMITS = {
  port: { min: 1, max: 65_535 },
  /** A timeout in milliseconds: at least 100 ms, at most one hour. */
  timeoutMs: { min: 100, max: 3_600_000 },
  /** A wait in seconds: at most one hour. */
  waitSeconds: { min: 1, max: 3600 },
  /** Log lines to show. */
  lines: { min: 1, max: 100_000 },
  /** The DNS timeout per query. */
  dnsTimeoutMs: { min: 50, max: 30_000 },
  sshConnectTimeoutMs: { min: 100, max: 120_000 },
  /** DB freshness SLA in hours: up to 90 days. */
  freshnessHours: { min: 1, max: 2160 },
  /** Certificate expiry thresholds in days: up to 10 years. */
  certDays: { min: 0, max: 3650 },
} as const

/** An IPv4 (dotted quad, no leading zeros, each part ≤ 255) or IPv6 literal: exactly what node:net accepts. */
export function isIpLiteral(s: string): boolean {
  return isIPv4(s) || (isIPv6(s) && !s.includes('%'))
}

// RFC 1123 host names: letters, digits and hyphens per label. Anything else (spaces, ';', '$(', quotes)
// is refused here, before it could reach a shell, a URL or a DNS query. A name whose last label is all
// digits (999.1.1.1, 10.0.0) is a mistyped address, not a name: refused, never looked up.
const HOSTNAME_RE = /^(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$/
export function isHostName(s: string): boolean {
  return HOSTNAME_RE.test(s) && !/(^|\.)\d+\.?$/.test(s)
}
const hostname = z.string().refine(isHostName, 'not a valid host name (letters, digits, hyphens and dots only; an address must be a valid IP)').meta({ pattern: HOSTNAME_RE.source })
const ipAddress = z.string().refine(isIpLiteral, 'not a valid IPv4 or IPv6 address (e.g. 10.0.0.53 or fd00::53)').meta({ pattern: '^[0-9A-Fa-f.:]+$' })
const port = z.number().int().min(LIMITS.port.min, 'a port is 1–65535').max(LIMITS.port.max, 'a port is 1–65535')

/** Checks "HOST:PORT" / "[V6]:PORT"; host must be an IP literal (ipOnly) or a host name / IP literal. */
function hostPortProblem(s: string, opts: { ipOnly?: boolean; portOptional?: boolean }): string | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+))(?::(\d{1,5}))?$/.exec(s)
  if (!m) return opts.portOptional ? 'must be ADDRESS or ADDRESS:PORT' : 'must be HOST:PORT'
  const host = m[1] ?? m[2]!
  if (m[1] !== undefined && !isIPv6(host)) return `"${host}" is not a valid IPv6 address`
  if (m[2] !== undefined && !(opts.ipOnly ? isIPv4(host) : isIPv4(host) || isHostName(host))) return `"${host}" is not a valid ${opts.ipOnly ? 'IP address' : 'host name or IP address'}`
  if (m[3] === undefined) return opts.portOptional ? undefined : 'must be HOST:PORT'
  const p = Number(m[3])
  if (p < LIMITS.port.min || p > LIMITS.port.max) return `port ${m[3]} is out of range (1–65535)`
  return undefined
}
const hostPort = (opts: { ipOnly?: boolean; portOptional?: boolean }) =>
  z.string().superRefine((s, ctx) => {
    const why = hostPortProblem(s, opts)
    if (why) ctx.addIssue({ code: 'custom', message: why })
  }).meta({ pattern: '^([A-Za-z0-9.-]+|\\[[0-9A-Fa-f:]+\\]):[0-9]{1,5}$' })

/**
 * A URL field: scheme from a per-field list, a valid host (name or real IP literal, as written — the URL
 * parser would turn "1.2.3" into 1.2.0.3), a port 1–65535, never user:password@ (the inventory is
 * shown and logged), and a path only where the field supports one end to end.
 */
export function urlProblem(s: string, opts: { schemes: readonly string[]; path: boolean }): string | undefined {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)([^?#]*)(\?[^#]*)?(#.*)?$/.exec(s)
  const schemes = opts.schemes.map((x) => `${x}://`).join(' or ')
  if (!m) return `must be a ${schemes} URL`
  const scheme = m[1]!.toLowerCase()
  if (!opts.schemes.includes(scheme)) return `scheme ${scheme}:// is not allowed here (use ${schemes})`
  const authority = m[2]!
  if (authority.includes('@')) return 'must not hold a user name or password (user:password@): keep credentials out of the inventory'
  const why = authority === '' ? 'has no host' : hostPortProblem(authority, { portOptional: true })
  if (why) return why.startsWith('must') ? 'has no valid host[:port]' : why
  if (m[4] !== undefined || m[5] !== undefined) return 'must not have a query (?…) or fragment (#…)'
  if (!opts.path && m[3] !== '' && m[3] !== '/') return `must not have a path ("${m[3]}"): labctl talks to the server's root (/healthz, /version, the Twirp API); serve it at the root of its own name`
  try {
    new URL(s)
  } catch {
    return 'is not a valid URL'
  }
  return undefined
}
const url = (opts: { schemes: readonly string[]; path: boolean }) =>
  z.string().superRefine((s, ctx) => {
    const why = urlProblem(s, opts)
    if (why) ctx.addIssue({ code: 'custom', message: why })
  }).meta({ format: 'uri', pattern: opts.path ? `^(${opts.schemes.join('|')})://[^@/?#]+(/[^?#]*)?$` : `^(${opts.schemes.join('|')})://[^@/?#]+/?$` })
/** The Trivy server's base URL (public or debug): http(s), no path. */
const serverUrl = url({ schemes: ['https', 'http'], path: false })
const safePath = z
  .string()
  .min(1)
  // eslint-disable-next-line no-control-regex
  .regex(/^[^\u0000-\u001f\u007f]+$/, 'must not contain control characters')
// A URL template with {version} (and optionally {arch}), no other placeholder: the release .deb or a lab mirror.
const packageUrlTemplate = z
  .string()
  .refine(
    (s) =>
      urlProblem(s.replace(/\{(version|arch)\}/g, 'x'), { schemes: ['https', 'http'], path: true }) === undefined &&
      s.includes('{version}') &&
      s.replace(/\{(version|arch)\}/g, '').match(/[{}\s]/) === null &&
      s.endsWith('.deb'),
    { message: 'must be an http(s) URL of a .deb with {version} (and optionally {arch}), no user:password@, e.g. https://mirror.lab/trivy/v{version}/trivy_{version}_Linux-{arch}.deb' },
  )
const semverPin = z.string().regex(/^\d+\.\d+\.\d+$/, 'must be an exact version such as 0.74.0')

/** A DNS server: an IP literal, ADDRESS:PORT or [V6]:PORT (never a name: it would need a resolver itself). */
export const DnsServer = z.string().superRefine((s, ctx) => {
  if (isIpLiteral(s)) return
  const why = hostPortProblem(s, { ipOnly: true, portOptional: true })
  if (why) ctx.addIssue({ code: 'custom', message: why === 'must be ADDRESS or ADDRESS:PORT' ? why : `${why} (must be ADDRESS or ADDRESS:PORT)` })
}).meta({ pattern: '^([0-9.]+|[0-9A-Fa-f:]+|\\[[0-9A-Fa-f:]+\\])(:[0-9]{1,5})?$' })

export const SshSchema = z.strictObject({
  // No defaults here: an absent user/port lets ~/.ssh/config decide, then ssh's own (root, 22), applied in src/ssh/target.ts.
  user: z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/, 'not a valid user name').optional().describe('remote user; else User in ~/.ssh/config; else root'),
  port: port.optional().describe('SSH port; else Port in ~/.ssh/config; else 22'),
  identityFile: safePath.optional().describe('private key file; else ssh-agent, then ~/.ssh/config'),
  knownHostsFile: safePath.optional().describe('known_hosts file used to verify the host key (default ~/.ssh/known_hosts)'),
  jumpHost: z
    .string()
    .superRefine((s, ctx) => {
      const m = /^([a-z_][a-z0-9_-]*@)?(.*)$/.exec(s)!
      const why = m[2]!.startsWith('-') ? 'must be [user@]host[:port]' : hostPortProblem(m[2]!, { portOptional: true })
      if (why) ctx.addIssue({ code: 'custom', message: why.startsWith('must') ? 'must be [user@]host[:port]' : why })
    })
    .optional(),
  connectTimeoutMs: z.number().int().min(LIMITS.sshConnectTimeoutMs.min).max(LIMITS.sshConnectTimeoutMs.max).default(10_000),
})

export const HostSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'short name: lowercase letters, digits, hyphens').describe('short name, e.g. trivy-0'),
  fqdn: hostname.describe('private FQDN, e.g. trivy-0.sub.comptech-lab.com'),
  aliases: z.array(hostname).default([]).describe('private aliases (A or CNAME records), e.g. trivy.sub.comptech-lab.com'),
  address: ipAddress.optional().describe('expected address of the FQDN and aliases'),
  debugUrl: serverUrl.optional().describe('direct debug URL of the Trivy listener, bypassing HAProxy'),
  listen: hostPort({}).default('0.0.0.0:4954').describe('trivy server --listen'),
  ssh: SshSchema.prefault({}),
  sudo: z.boolean().default(true).describe('use sudo -n for privileged steps'),
})

export const TrivySchema = z.strictObject({
  version: semverPin.describe('pinned Trivy version, server and client'),
  publicUrl: serverUrl.describe('public URL through HAProxy, e.g. https://trivy.apps.sub.comptech-lab.com'),
  caBundle: safePath.optional().describe('PEM CA bundle to verify the public URL (default: system store)'),
  tokenHeader: z.string().regex(/^[A-Za-z0-9-]+$/, 'must be an HTTP header name').default('Trivy-Token'),
  cacheDir: safePath.default('/var/lib/trivy'),
  serviceName: z.string().regex(/^[A-Za-z0-9@._-]+$/, 'must be a systemd unit name').default('trivy-server'),
  serviceUser: z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/).default('trivy'),
  envFile: safePath.default('/etc/trivy/trivy-server.env'),
  cacheBackend: z.string().regex(/^(fs|memory|rediss?:\/\/\S+)$/, 'must be fs, memory or redis://…').default('fs'),
  dbRepositories: z.array(z.string().min(1)).default([]),
  packageUrl: packageUrlTemplate
    .optional()
    .describe('URL template of the pinned trivy .deb ({version}, optional {arch} = 64bit|ARM64); its checksums file trivy_{version}_checksums.txt is read from the same directory. Default: the GitHub release'),
  allowlist: z.array(z.string().refine((s) => isIpLiteral(s) || z.cidrv4().safeParse(s).success || z.cidrv6().safeParse(s).success, 'not a valid IPv4/IPv6 address or CIDR'))
    .default([])
    .describe('addresses (or CIDRs) allowed to reach the listener port besides the HAProxy edge: the firewall opens it only to these'),
  plainHttpNetworks: z
    .array(z.union([z.cidrv4(), z.cidrv6()], { error: 'not an IPv4/IPv6 CIDR, e.g. 198.18.7.0/24' }))
    .default([])
    .describe(
      'networks (CIDRs) on which a host\'s plain-HTTP debugUrl may be sent the token (e.g. the lab /24, behind the listener\'s firewall); loopback always may, anywhere else only HTTPS or --insecure',
    ),
  hosts: z.array(HostSchema).min(1, 'at least one scanner host is required'),
})

export const JenkinsSchema = z.strictObject({
  url: url({ schemes: ['https', 'http'], path: true }).describe('Jenkins root URL (a path such as /jenkins is kept)'),
  credentialId: z.string().regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, . _ - only').default('trivy-server-token'),
  store: z
    .string()
    .regex(/^(system|folder:[^/\s]+(\/[^/\s]+)*)$/, 'must be "system" or "folder:PATH/TO/FOLDER"')
    .default('system'),
  user: z.string().min(1).optional(),
  apiTokenFile: safePath.optional().describe('file holding the Jenkins API token (0600)'),
  caBundle: safePath.optional(),
})

export const ThresholdsSchema = z.strictObject({
  dbFreshnessHours: z.number().min(LIMITS.freshnessHours.min).max(LIMITS.freshnessHours.max).default(48),
  diskWarnPercent: z.number().min(1).max(100).default(80),
  diskCritPercent: z.number().min(1).max(100).default(90),
  certWarnDays: z.number().int().min(LIMITS.certDays.min).max(LIMITS.certDays.max).default(21),
  certCritDays: z.number().int().min(LIMITS.certDays.min).max(LIMITS.certDays.max).default(7),
})

// The lab's registry mirror of Trivy's OCI databases (`labctl trivy db mirror | status`).
const imageRef = z.string().regex(/^[A-Za-z0-9.[\]:-]+\/[a-z0-9._/-]+(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$/, 'must be REGISTRY[:PORT]/REPOSITORY[:TAG]')
export const MirrorSchema = z.strictObject({
  registry: z.string().regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/, 'must be HOST[:PORT]').describe('the lab registry holding the copies, e.g. registry.sub.comptech-lab.com:5000'),
  namespace: z.string().regex(/^[a-z0-9]+([._-][a-z0-9]+)*(\/[a-z0-9]+([._-][a-z0-9]+)*)*$/, 'lowercase path such as aquasec').default('aquasec').describe('repositories are NAMESPACE/trivy-db:2, NAMESPACE/trivy-java-db:1, NAMESPACE/trivy-checks:1'),
  insecure: z.boolean().default(false).describe('plain HTTP to the registry (automatic for loopback and private addresses)'),
  caBundle: safePath.optional().describe('PEM CA bundle for the registry\'s TLS'),
  sources: z
    .strictObject({ db: imageRef.optional(), javaDb: imageRef.optional(), checks: imageRef.optional() })
    .prefault({})
    .describe('where to copy from (default ghcr.io/aquasecurity/trivy-db:2, …/trivy-java-db:1, …/trivy-checks:1)'),
  timeoutMs: z.number().int().min(1000).max(600_000).default(60_000).describe('per registry request'),
})

export const InventorySchema = z
  .strictObject({
    name: z.string().regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, . _ - only'),
    description: z.string().optional(),
    dns: z.strictObject({
      servers: z.array(DnsServer).min(1, 'at least one DNS server is required'),
      timeoutMs: z.number().int().min(LIMITS.dnsTimeoutMs.min).max(LIMITS.dnsTimeoutMs.max).default(2000),
    }),
    trivy: TrivySchema,
    jenkins: JenkinsSchema.optional(),
    secrets: z.strictObject({ dir: safePath.default('secrets/trivy-vm') }).prefault({}),
    thresholds: ThresholdsSchema.prefault({}),
    mirror: MirrorSchema.optional(),
  })
  .superRefine((inv, ctx) => {
    if (inv.thresholds.diskWarnPercent >= inv.thresholds.diskCritPercent) {
      ctx.addIssue({ code: 'custom', path: ['thresholds', 'diskWarnPercent'], message: 'must be lower than diskCritPercent' })
    }
    // Days left: warn earlier (more days left) than crit.
    if (inv.thresholds.certWarnDays <= inv.thresholds.certCritDays) {
      ctx.addIssue({ code: 'custom', path: ['thresholds', 'certWarnDays'], message: 'must be greater than certCritDays (warn before it is critical)' })
    }
    const seen = new Set<string>()
    inv.trivy.hosts.forEach((h, i) => {
      if (seen.has(h.name)) ctx.addIssue({ code: 'custom', path: ['trivy', 'hosts', i, 'name'], message: `duplicate host name "${h.name}"` })
      seen.add(h.name)
    })
  })

export type Inventory = z.output<typeof InventorySchema>
export type ScannerHost = z.output<typeof HostSchema>

export function inventoryJsonSchema(): unknown {
  return z.toJSONSchema(InventorySchema, { io: 'input', unrepresentable: 'any' })
}
