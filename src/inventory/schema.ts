import { z } from 'zod'

// RFC 1123 host names: letters, digits and hyphens per label. Anything else (spaces, ';', '$(', quotes)
// is refused here, before it could reach a shell, a URL or a DNS query.
const HOSTNAME_RE = /^(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$/
const hostname = z.string().regex(HOSTNAME_RE, 'not a valid host name (letters, digits, hyphens and dots only)')
const ipAddress = z.union([z.ipv4(), z.ipv6()], { error: 'not an IPv4 or IPv6 address' })
const port = z.number().int().min(1).max(65535)
const httpUrl = z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' })
const safePath = z
  .string()
  .min(1)
  // eslint-disable-next-line no-control-regex
  .regex(/^[^\u0000-\u001f]+$/, 'must not contain control characters')
// A URL template with {version} (and optionally {arch}), no other placeholder: the release .deb or a lab mirror.
const packageUrlTemplate = z
  .string()
  .refine((s) => /^https?:\/\/[^\s{}]+/.test(s) && s.includes('{version}') && s.replace(/\{(version|arch)\}/g, '').match(/[{}\s]/) === null && s.endsWith('.deb'), {
    message: 'must be an http(s) URL of a .deb with {version} (and optionally {arch}), e.g. https://mirror.lab/trivy/v{version}/trivy_{version}_Linux-{arch}.deb',
  })
const semverPin = z.string().regex(/^\d+\.\d+\.\d+$/, 'must be an exact version such as 0.74.0')

export const DnsServer = z.union([
  ipAddress,
  z.string().regex(/^(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]):\d{1,5}$/, 'must be ADDRESS or ADDRESS:PORT'),
])

export const SshSchema = z.strictObject({
  // No defaults here: an absent user/port lets ~/.ssh/config decide, then ssh's own (root, 22), applied in src/ssh/target.ts.
  user: z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/, 'not a valid user name').optional().describe('remote user; else User in ~/.ssh/config; else root'),
  port: port.optional().describe('SSH port; else Port in ~/.ssh/config; else 22'),
  identityFile: safePath.optional().describe('private key file; else ssh-agent, then ~/.ssh/config'),
  knownHostsFile: safePath.optional().describe('known_hosts file used to verify the host key (default ~/.ssh/known_hosts)'),
  jumpHost: z.string().regex(/^([a-z_][a-z0-9_-]*@)?[A-Za-z0-9.-]+(:\d+)?$/, 'must be [user@]host[:port]').optional(),
  connectTimeoutMs: z.number().int().min(100).max(120_000).default(10_000),
})

export const HostSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'short name: lowercase letters, digits, hyphens').describe('short name, e.g. trivy-0'),
  fqdn: hostname.describe('private FQDN, e.g. trivy-0.sub.comptech-lab.com'),
  aliases: z.array(hostname).default([]).describe('private aliases (A or CNAME records), e.g. trivy.sub.comptech-lab.com'),
  address: ipAddress.optional().describe('expected address of the FQDN and aliases'),
  debugUrl: httpUrl.optional().describe('direct debug URL of the Trivy listener, bypassing HAProxy'),
  listen: z.string().regex(/^[A-Za-z0-9.:[\]-]+:\d{1,5}$/, 'must be HOST:PORT').default('0.0.0.0:4954').describe('trivy server --listen'),
  ssh: SshSchema.prefault({}),
  sudo: z.boolean().default(true).describe('use sudo -n for privileged steps'),
})

export const TrivySchema = z.strictObject({
  version: semverPin.describe('pinned Trivy version, server and client'),
  publicUrl: httpUrl.describe('public URL through HAProxy, e.g. https://trivy.apps.sub.comptech-lab.com'),
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
  allowlist: z
    .array(z.union([ipAddress, z.cidrv4(), z.cidrv6()], { error: 'not an IPv4/IPv6 address or CIDR' }))
    .default([])
    .describe('addresses (or CIDRs) allowed to reach the listener port besides the HAProxy edge: the firewall opens it only to these'),
  hosts: z.array(HostSchema).min(1, 'at least one scanner host is required'),
})

export const JenkinsSchema = z.strictObject({
  url: httpUrl,
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
  dbFreshnessHours: z.number().positive().default(48),
  diskWarnPercent: z.number().min(1).max(100).default(80),
  diskCritPercent: z.number().min(1).max(100).default(90),
  certWarnDays: z.number().int().min(0).default(21),
  certCritDays: z.number().int().min(0).default(7),
})

export const InventorySchema = z
  .strictObject({
    name: z.string().regex(/^[A-Za-z0-9._-]+$/, 'letters, digits, . _ - only'),
    description: z.string().optional(),
    dns: z.strictObject({
      servers: z.array(DnsServer).min(1, 'at least one DNS server is required'),
      timeoutMs: z.number().int().min(50).max(30_000).default(2000),
    }),
    trivy: TrivySchema,
    jenkins: JenkinsSchema.optional(),
    secrets: z.strictObject({ dir: safePath.default('secrets/trivy-vm') }).prefault({}),
    thresholds: ThresholdsSchema.prefault({}),
  })
  .superRefine((inv, ctx) => {
    if (inv.thresholds.diskWarnPercent >= inv.thresholds.diskCritPercent) {
      ctx.addIssue({ code: 'custom', path: ['thresholds', 'diskWarnPercent'], message: 'must be lower than diskCritPercent' })
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
