// `labctl trivy exporter --systemd`: the exporter as a service of its own, under its own unprivileged
// user, with install's hardening (hardeningDirectives) and the token in a file only that user can read.
import { UsageError } from '../errors.js'
import type { Inventory } from '../inventory/schema.js'
import { renderServiceUnit } from '../trivy/install-render.js'

export type ExporterUnitOptions = {
  inventory: Inventory
  listen: string
  /** Extra `labctl trivy exporter` arguments (intervals, timeouts); no secret ever goes here. */
  args: string[]
  user: string
  /** Where labctl is installed on the monitoring host. */
  labctlBin: string
  /** The directory with the inventory (lab.yaml), the token file and the SSH key, owned by `user`. */
  configDir: string
}

export const EXPORTER_UNIT_DEFAULTS = { user: 'labctl-exporter', labctlBin: '/usr/local/bin/labctl', configDir: '/etc/labctl/trivy-exporter' } as const

/** systemd's ExecStart= splits on spaces and expands % and $: keep every argument plain. */
function plain(what: string, v: string): string {
  if (!/^[A-Za-z0-9_@+=:,./[\]-]+$/.test(v)) {
    throw new UsageError(`${what} "${v}" has characters a systemd unit cannot carry unquoted`, { suggestion: 'use a path or value made of letters, digits and . _ - / : = , [ ] only' })
  }
  return v
}

export function renderExporterUnit(o: ExporterUnitOptions): string {
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(o.user)) throw new UsageError(`--unit-user "${o.user}" is not a valid user name`, { suggestion: 'e.g. --unit-user labctl-exporter' })
  const dir = plain('--config-dir', o.configDir.replace(/\/+$/, ''))
  const exec = [plain('--labctl-bin', o.labctlBin), 'trivy', 'exporter', '--config', `${dir}/lab.yaml`, '--token-file', `${dir}/token`, '--listen', plain('--listen', o.listen), ...o.args.map((a) => plain('argument', a))]
  const setup = [
    `useradd --system --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin ${o.user}`,
    `install -d -o root -g ${o.user} -m 0750 ${dir}`,
    `install -o root -g ${o.user} -m 0640 lab.yaml ${dir}/lab.yaml   # its ssh.identityFile and knownHostsFile under ${dir}`,
    `install -o ${o.user} -g ${o.user} -m 0400 token ${dir}/token     # the scanner token: readable only by ${o.user}`,
    `install -o ${o.user} -g ${o.user} -m 0400 id_ed25519 ${dir}/id_ed25519`,
  ]
  return renderServiceUnit({
    header: [
      `# Rendered by \`labctl trivy exporter --systemd\` (lab ${o.inventory.name}): Prometheus metrics of the Trivy scanner.`,
      '# Install on the monitoring host as /etc/systemd/system/labctl-trivy-exporter.service, after:',
      ...setup.map((l) => `#   ${l}`),
      '# then: systemctl daemon-reload && systemctl enable --now labctl-trivy-exporter',
      `# The token never appears in argv: the exporter reads ${dir}/token itself (--token-file).`,
    ],
    description: `labctl Trivy exporter (lab ${o.inventory.name}): canary, DB freshness, TLS, disk as Prometheus metrics`,
    user: o.user,
    service: [`ExecStart=${exec.join(' ')}`, 'Restart=always', 'RestartSec=5', 'TimeoutStopSec=15'],
    readWritePaths: [],
    after: [`ReadOnlyPaths=${dir}`, 'InaccessiblePaths=-/etc/trivy', 'ProtectClock=true', 'ProtectHostname=true', 'RestrictNamespaces=true', 'MemoryMax=512M'],
  })
}
