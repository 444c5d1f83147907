import type { Inventory } from './schema.js'

/** The inventory as labctl understood it (defaults applied). It holds paths to secrets, never secrets. */
export type ConfigShowResult = { path: string; inventory: Inventory }

export function summarizeInventory(inv: Inventory): string[] {
  const lines = [
    `lab:           ${inv.name}${inv.description ? ` — ${inv.description}` : ''}`,
    `dns servers:   ${inv.dns.servers.join(', ')} (timeout ${inv.dns.timeoutMs} ms)`,
    `public url:    ${inv.trivy.publicUrl}${inv.trivy.caBundle ? ` (CA ${inv.trivy.caBundle})` : ''}`,
    `trivy pin:     ${inv.trivy.version}   token header: ${inv.trivy.tokenHeader}   cache dir: ${inv.trivy.cacheDir}`,
    `service:       ${inv.trivy.serviceName} as ${inv.trivy.serviceUser}, env file ${inv.trivy.envFile}, cache backend ${inv.trivy.cacheBackend.replace(/\/\/[^@/]*@/, '//***@')}`,
  ]
  for (const h of inv.trivy.hosts) {
    lines.push(
      `host ${h.name}:`,
      `  fqdn ${h.fqdn}${h.aliases.length ? `, aliases ${h.aliases.join(', ')}` : ''}${h.address ? `, address ${h.address}` : ''}`,
      `  ssh ${h.ssh.user ? `${h.ssh.user}@` : ''}${h.fqdn}${h.ssh.port ? `:${h.ssh.port}` : ''}${h.ssh.jumpHost ? ` via ${h.ssh.jumpHost}` : ''}${h.ssh.identityFile ? ` key ${h.ssh.identityFile}` : ''}${h.sudo ? ', sudo' : ''}`,
      `  listen ${h.listen}${h.debugUrl ? `, debug url ${h.debugUrl}` : ''}`,
    )
  }
  if (inv.jenkins) lines.push(`jenkins:       ${inv.jenkins.url} credential ${inv.jenkins.credentialId} in store ${inv.jenkins.store}`)
  lines.push(`secrets dir:   ${inv.secrets.dir}`)
  const t = inv.thresholds
  lines.push(`thresholds:    DB fresh ${t.dbFreshnessHours} h, disk warn ${t.diskWarnPercent}% crit ${t.diskCritPercent}%, cert warn ${t.certWarnDays} d crit ${t.certCritDays} d`)
  return lines
}

/** Redis URLs may carry a password: mask it in anything shown. */
export function redactInventory(inv: Inventory): Inventory {
  return { ...inv, trivy: { ...inv.trivy, cacheBackend: inv.trivy.cacheBackend.replace(/\/\/[^@/]*@/, '//***@') } }
}
