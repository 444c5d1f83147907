import { writeOutputFile } from '../../src/fs/write-output.js'
import { resolve } from 'node:path'
import { Flags } from '@oclif/core'
import { LabctlCommand, describe } from '../_base.js'
import { sshFlags } from '../_flags.js'
import { checkLine } from '../_render.js'
import { selectHosts } from '../../src/inventory/load.js'
import { LabctlError, UsageError } from '../../src/errors.js'
import { writePrivateFile } from '../../src/private-file.js'
import { installHost, type HostInstallResult } from '../../src/trivy/install.js'
import { firewallSources, planToken, storeToken } from '../../src/trivy/install-plan.js'
import { LIMITS } from '../../src/inventory/schema.js'

export type InstallCommandResult = {
  lab: string
  dryRun: boolean
  hosts: HostInstallResult[]
  rendered?: { cloudInit?: string; haproxy?: string }
  ok: boolean
}

export default class TrivyInstall extends LabctlCommand<InstallCommandResult> {
  static override summary = 'Provision a scanner host idempotently: pinned trivy package, service user, env file, hardened unit, firewall; plan first.'
  static override description = describe(
    `Reads the host's state over SSH (one round trip), shows the plan like a diff (secrets masked: the token by its
sha256 fingerprint), applies it with --yes or after a confirmation, and ends with validate's server-side checks
(healthz, version, db, scan, auth). --dry-run only plans. A second run plans no changes.
  package    exactly trivy.version: the release .deb (or trivy.packageUrl, a lab mirror) downloaded on the host,
             its sha256 checked against trivy_<version>_checksums.txt before dpkg -i, then apt-mark hold.
             Another installed version is drift: refused unless --upgrade.
  user       a locked system user (trivy.serviceUser) with /usr/sbin/nologin
  cache-dir  trivy.cacheDir owned by it, 0750 (a warning when it is not its own mount)
  env-file   trivy.envFile, root 0600: TRIVY_TOKEN (from the secrets dir; generated and stored there 0600 when
             absent) and TRIVY_LISTEN / _CACHE_DIR / _TOKEN_HEADER / _DB_REPOSITORY / _CACHE_BACKEND; sent by SFTP
  unit       a hardened systemd unit (NoNewPrivileges, ProtectSystem=strict, ReadWritePaths, PrivateTmp, ...)
  firewall   the listener port open only to the HAProxy edge and trivy.allowlist (ufw, else nftables); skipped
             with a warning when the host has neither, planned only when /etc/labctl/firewall-plan-only exists
  service    enabled, (re)started when something above changed, /healthz ok
--cloud-init FILE renders user-data doing the same on a fresh VM; --haproxy FILE renders the HAProxy backend
trivy-vm-be and the frontend rule for the public name. Both only render: no host is touched.`,
  )
  static override examples = [
    '<%= config.bin %> trivy install --host trivy-0 --dry-run',
    '<%= config.bin %> trivy install --host trivy-0 --yes',
    '<%= config.bin %> trivy install --upgrade --yes',
    '<%= config.bin %> trivy install --host trivy-0 --cloud-init user-data.yaml --haproxy trivy-edge.cfg',
  ]
  static override flags = {
    ...sshFlags,
    'dry-run': Flags.boolean({ summary: 'Show the plan and change nothing.' }),
    upgrade: Flags.boolean({ summary: 'Replace an installed trivy of another version with the pinned one.' }),
    'cloud-init': Flags.string({ summary: 'Render cloud-init user-data (#cloud-config) for a fresh VM into FILE (0600: it holds the token).' }),
    haproxy: Flags.string({ summary: 'Render the HAProxy backend trivy-vm-be and the frontend rule into FILE.' }),
    wait: Flags.integer({ summary: 'Seconds to wait for /healthz after a (re)start (the first start downloads the DB).', default: 300, min: 1, max: LIMITS.waitSeconds.max }),
    timeout: Flags.integer({ summary: 'Timeout of each remote step in milliseconds.', default: 120_000, min: 1000, max: LIMITS.timeoutMs.max }),
  }

  async run(): Promise<InstallCommandResult> {
    const { flags } = await this.parse(TrivyInstall)
    const loaded = this.loadInventory(flags)
    const inv = loaded.inventory
    const hosts = selectHosts(inv, flags.host)

    if (flags['cloud-init'] || flags.haproxy) {
      const rendered: InstallCommandResult['rendered'] = {}
      if (flags['cloud-init']) {
        if (hosts.length !== 1) throw new UsageError('--cloud-init renders one VM: pick it with --host', { suggestion: `use --host ${hosts[0]?.name ?? 'NAME'}` })
        const host = hosts[0]!
        const { renderCloudInit, checkCloudConfig } = await import('../../src/trivy/install-cloudinit.js')
        const token = planToken(loaded, undefined)
        if (token.generated) {
          await storeToken(token)
          this.note(`• a new token was generated and stored in ${token.path} (0600)`)
        }
        const fw = await firewallSources(inv, host)
        for (const w of fw.warnings) this.warn(w)
        const text = renderCloudInit({ inv, host, token: token.token, firewall: fw.spec })
        const check = checkCloudConfig(text)
        if (!check.ok) throw new LabctlError(`the rendered cloud-init does not pass its schema: ${check.problems.join('; ')}`, { suggestion: 'this is a labctl bug: report it' })
        const file = resolve(flags['cloud-init'])
        writePrivateFile(file, text)
        rendered.cloudInit = file
        this.log(`wrote ${file}: cloud-init user-data for ${host.name} (trivy ${inv.trivy.version}); it holds the token: keep it private`)
      }
      if (flags.haproxy) {
        const { renderHaproxy } = await import('../../src/trivy/install-render.js')
        const file = resolve(flags.haproxy)
        writeOutputFile(file, renderHaproxy(inv, hosts), { flag: '--haproxy' })
        rendered.haproxy = file
        this.log(`wrote ${file}: HAProxy backend trivy-vm-be (${hosts.map((h) => h.name).join(', ')}) and the frontend rule for ${new URL(inv.trivy.publicUrl).hostname}`)
      }
      return { lab: inv.name, dryRun: false, hosts: [], rendered, ok: true }
    }

    const remote = await this.openRemote(flags)
    const results: HostInstallResult[] = []
    const dryRun = flags['dry-run']
    for (const host of hosts) {
      const r = await installHost({
        loaded,
        host,
        remote,
        upgrade: flags.upgrade,
        dryRun,
        waitMs: flags.wait * 1000,
        timeoutMs: flags.timeout,
        progress: (m) => this.note(`• ${m}`),
        onPlan: (_h, lines) => {
          if (!this.jsonEnabled()) for (const l of lines) this.log(l)
        },
        confirm: (h) =>
          this.confirm(flags, `Apply this plan to ${h.name}?`, `trivy install changes ${h.name}`, 'review the plan (--dry-run), then rerun with --yes, or from a terminal to answer the prompt'),
        signal: this.abort.signal,
      })
      results.push(r)
      if (r.cancelled) throw new LabctlError(`${host.name}: not confirmed; nothing was changed`, { code: 'CANCELLED', suggestion: 'review the plan (--dry-run) and rerun when ready' })
      if (dryRun) continue
      for (const s of r.applied) this.log(`ok    ${host.name} ${s.id.padEnd(10)} ${s.detail} (${s.durationMs} ms)`)
      if (r.validate) for (const c of r.validate.checks) this.log(checkLine(c))
      const summary = r.changes === 0 ? 'no changes' : `${r.applied.length} step${r.applied.length === 1 ? '' : 's'} applied`
      this.log(`${host.name}: ${summary}; ${r.ok ? 'validate passed' : 'validate FAILED'}`)
    }
    if (dryRun) this.note('dry run: nothing was changed')
    const ok = results.every((r) => r.ok)
    if (!ok && !dryRun) this.markFailed()
    return { lab: inv.name, dryRun, hosts: results, ok }
  }
}

