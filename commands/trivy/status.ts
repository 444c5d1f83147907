import { Flags } from '@oclif/core'
import { LabctlCommand, describe } from '../_base.js'
import { sshFlags } from '../_flags.js'
import { selectHosts } from '../../src/inventory/load.js'
import { hostStatus, type HostStatus } from '../../src/trivy/remote.js'
import { LIMITS } from '../../src/inventory/schema.js'

export type StatusResult = { lab: string; ok: boolean; hosts: HostStatus[] }

const dur = (s?: number): string => (s === undefined ? '?' : s >= 86400 ? `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h` : s >= 3600 ? `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m` : `${Math.floor(s / 60)}m ${s % 60}s`)

export default class TrivyStatus extends LabctlCommand<StatusResult> {
  static override summary = 'Show the Trivy service on each scanner host: unit state, PID, uptime, restarts, listener, installed vs pinned and running version.'
  static override description = describe('Reads `systemctl show`, `trivy --version`, `ss` and `systemd-analyze security` (exposure of the unit: 0 best … 10 worst) over one SSH connection per host, and /version over HTTP. Exit 3 when a host is not healthy.')
  static override examples = ['<%= config.bin %> trivy status --lab sandbox', '<%= config.bin %> trivy status --host trivy-0 --json']
  static override flags = { ...sshFlags, timeout: Flags.integer({ summary: 'Timeout per step in milliseconds.', default: 15_000, min: 100, max: LIMITS.timeoutMs.max }) }

  async run(): Promise<StatusResult> {
    const { flags } = await this.parse(TrivyStatus)
    const loaded = this.loadInventory(flags)
    const remote = await this.openRemote(flags)
    const hosts = await Promise.all(selectHosts(loaded.inventory, flags.host).map((host) => hostStatus({ loaded, host, remote, timeoutMs: flags.timeout })))
    for (const h of hosts) {
      const u = h.unit
      this.log(`${h.ok ? 'ok  ' : 'FAIL'}  ${h.host}`)
      this.log(`      unit       ${loaded.inventory.trivy.serviceName}: ${u.active} (${u.sub}), ${u.enabled}, main PID ${u.mainPid || '-'}, up ${dur(u.uptimeSeconds)}, ${u.restarts} restarts`)
      this.log(`      listening  ${h.listening.join(', ') || '-'}`)
      this.log(`      installed  trivy ${h.installed ?? '-'} (pin ${h.pinned}${h.versionMatchesPin ? ', matches' : ', DRIFT'})`)
      this.log(`      hardening  ${h.security ? `systemd-analyze security: exposure ${h.security.exposure} (${h.security.rating})` : '- (no systemd-analyze on the host)'}`)
      this.log(`      server     ${h.server ? `${h.server.version}, DB ${h.server.db ? `updated ${h.server.db.updatedAt}` : 'MISSING'}` : h.serverError}`)
      for (const p of h.problems) this.log(`      problem    ${p}`)
    }
    const ok = hosts.every((h) => h.ok)
    if (!ok) this.markFailed()
    return { lab: loaded.inventory.name, ok, hosts }
  }
}
