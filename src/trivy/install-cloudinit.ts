// `labctl trivy install --cloud-init FILE`: user-data (#cloud-config) that provisions a fresh Ubuntu VM the
// way `labctl trivy install` provisions a running one — same package script (pinned .deb, checksum
// verified, held), same service user, env file, unit and firewall rules. Checked against a schema of the
// cloud-init keys it uses (mirroring cloud-init's own schema for them), or `cloud-init schema` when present.
import { parseDocument, stringify } from 'yaml'
import { z } from 'zod'
import type { Inventory, ScannerHost } from '../inventory/schema.js'
import { DEFAULT_PACKAGE_URL, desiredEnv, mergeEnv, PACKAGE_SCRIPT, renderUnit, ufwRules, unitPath, type FirewallSpec } from './install-render.js'

export const CLOUD_INIT_SCRIPT = '/usr/local/sbin/labctl-install-trivy'

// The subset of cloud-init's schema (cloudinit/config/schemas/schema-cloud-config-v1.json) for the keys
// this renderer uses: users_groups.user, cc_write_files items and runcmd; unknown keys are errors there too.
const UserSchema = z.strictObject({
  name: z.string().min(1),
  gecos: z.string().optional(),
  homedir: z.string().optional(),
  shell: z.string().optional(),
  system: z.boolean().optional(),
  lock_passwd: z.boolean().optional(),
  no_create_home: z.boolean().optional(),
  no_user_group: z.boolean().optional(),
  primary_group: z.string().optional(),
  groups: z.union([z.string(), z.array(z.string()).min(1)]).optional(),
  sudo: z.union([z.string(), z.null(), z.array(z.string().nullable())]).optional(),
  uid: z.number().int().optional(),
})
const WriteFileSchema = z.strictObject({
  path: z.string().regex(/^\//, 'must be an absolute path'),
  content: z.string().optional(),
  owner: z.string().regex(/^[a-z_][a-z0-9_-]*(:[a-z_][a-z0-9_-]*)?$/, 'must be USER or USER:GROUP').optional(),
  permissions: z.string().regex(/^0o?[0-7]{3,4}$/, "must be an octal string such as '0644'").optional(),
  encoding: z.enum(['gz', 'gzip', 'gz+base64', 'gzip+base64', 'gz+b64', 'gzip+b64', 'b64', 'base64', 'text/plain']).optional(),
  append: z.boolean().optional(),
  defer: z.boolean().optional(),
})
export const CloudConfigSchema = z.strictObject({
  users: z.array(z.union([z.string(), UserSchema])).min(1).optional(),
  write_files: z.array(WriteFileSchema).min(1).optional(),
  runcmd: z.array(z.union([z.string(), z.array(z.string()).min(1), z.null()])).min(1).optional(),
})
export type CloudConfig = z.infer<typeof CloudConfigSchema>

export type CloudInitOptions = { inv: Inventory; host: ScannerHost; token: string; firewall?: FirewallSpec | undefined }

export function renderCloudInit(o: CloudInitOptions): string {
  const t = o.inv.trivy
  const envHeader = `# trivy-server environment, managed by \`labctl trivy install\` (lab ${o.inv.name}); root only, 0600.\n`
  const config: CloudConfig = {
    users: [
      'default',
      { name: t.serviceUser, gecos: 'Trivy server', system: true, shell: '/usr/sbin/nologin', lock_passwd: true, homedir: t.cacheDir, no_create_home: true },
    ],
    write_files: [
      { path: t.envFile, owner: 'root:root', permissions: '0600', content: mergeEnv(undefined, desiredEnv(o.inv, o.host, o.token), envHeader) },
      { path: unitPath(o.inv), owner: 'root:root', permissions: '0644', content: renderUnit(o.inv) },
      { path: CLOUD_INIT_SCRIPT, owner: 'root:root', permissions: '0700', content: `#!/bin/sh\n# labctl: install exactly trivy ${t.version} from the release .deb, checksum verified, and hold it.\n${PACKAGE_SCRIPT}` },
    ],
    runcmd: [
      [CLOUD_INIT_SCRIPT, t.packageUrl ?? DEFAULT_PACKAGE_URL, t.version],
      ['install', '-d', '-o', t.serviceUser, '-g', t.serviceUser, '-m', '0750', t.cacheDir],
      ['systemctl', 'daemon-reload'],
      ['systemctl', 'enable', '--now', t.serviceName],
      ...(o.firewall && o.firewall.sources.length ? ufwRules(o.firewall).map((r) => ['ufw', ...r]) : []),
    ],
  }
  const fw = o.firewall?.sources.length
    ? `# Firewall: ufw rules open port ${o.firewall.port} only to ${o.firewall.sources.join(', ')}; ufw itself is not enabled here (allow SSH first).`
    : '# Firewall: no rules (trivy.allowlist is empty and the edge address is unknown).'
  return `#cloud-config
# Rendered by \`labctl trivy install --cloud-init\` for ${o.host.name} (${o.host.fqdn}), lab ${o.inv.name}, trivy ${t.version}.
# It holds the scanner token (${t.envFile}): keep this file private (0600) and remove it after first boot.
${fw}
${stringify(config, { lineWidth: 0 })}`
}

export type CloudConfigCheck = { ok: boolean; problems: string[]; config?: CloudConfig }

/** YAML syntax, the #cloud-config header and the schema of the keys used. */
export function checkCloudConfig(text: string): CloudConfigCheck {
  const problems: string[] = []
  if (text.split('\n', 1)[0]?.trim() !== '#cloud-config') problems.push('the first line must be "#cloud-config"')
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: false })
  for (const e of doc.errors) problems.push(`YAML: ${e.message.split('\n')[0]}`)
  if (doc.errors.length) return { ok: false, problems }
  const parsed = CloudConfigSchema.safeParse(doc.toJS())
  if (!parsed.success) {
    for (const i of parsed.error.issues) problems.push(`${i.path.join('.') || '(top)'}: ${i.message}`)
    return { ok: false, problems }
  }
  return { ok: problems.length === 0, problems, config: parsed.data }
}
