// What a run takes from the lab's inventory: values for the {{placeholders}} of instructions and
// commands, and the secrets to redact. A missing or broken inventory is not fatal here: the steps
// themselves report it (exit 2), and the transcript records that.
import { errorMessage } from '../errors.js'
import { inventoryPath, loadInventory } from '../inventory/load.js'
import { collectSecrets } from './redact.js'
import { DEFAULT_USER } from '../ssh/target.js'

export type LabContext = { vars: Record<string, string>; secrets: string[]; warnings: string[]; inventory?: string }

export function labContext(sel: { lab?: string | undefined; config?: string | undefined; host?: string | undefined }, env: NodeJS.ProcessEnv = process.env): LabContext {
  try {
    const loaded = loadInventory({ lab: sel.lab, config: sel.config, env })
    const inv = loaded.inventory
    const t = inv.trivy
    const hosts = sel.host ? t.hosts.filter((h) => h.name === sel.host || h.fqdn === sel.host) : t.hosts
    const first = hosts[0] ?? t.hosts[0]!
    const secretsDir = inventoryPath(loaded, inv.secrets.dir)
    const vars: Record<string, string> = {
      lab: inv.name,
      inventory: loaded.path,
      publicUrl: t.publicUrl,
      publicName: new URL(t.publicUrl).hostname,
      serviceName: t.serviceName,
      serviceUser: t.serviceUser,
      envFile: t.envFile,
      cacheDir: t.cacheDir,
      secretsDir,
      dnsServers: inv.dns.servers.join(', '),
      pin: t.version,
      tokenHeader: t.tokenHeader,
      hosts: hosts.map((h) => h.name).join(', '),
      host: sel.host ?? first.name,
      fqdn: first.fqdn,
      sshUser: first.ssh.user ?? DEFAULT_USER,
      ...(t.caBundle ? { caBundle: inventoryPath(loaded, t.caBundle) } : {}),
      ...(t.dbRepositories.length ? { dbRepositories: t.dbRepositories.join(', ') } : {}),
      ...(inv.jenkins ? { jenkinsUrl: inv.jenkins.url, credentialId: inv.jenkins.credentialId } : { credentialId: 'trivy-server-token' }),
    }
    return { vars, secrets: collectSecrets(secretsDir, env), warnings: [], inventory: loaded.path }
  } catch (err) {
    return { vars: {}, secrets: collectSecrets(undefined, env), warnings: [`cannot read the inventory (${errorMessage(err)}): placeholders stay unfilled, the steps will report it`] }
  }
}
