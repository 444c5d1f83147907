import { Flags } from '@oclif/core'
import { LabctlCommand, describe } from '../_base.js'
import { sshFlags } from '../_flags.js'
import { selectHosts } from '../../src/inventory/load.js'
import { restartService, type RestartResult } from '../../src/trivy/restart.js'
import { LIMITS } from '../../src/inventory/schema.js'

export type RestartCommandResult = { hosts: RestartResult[] }

export default class TrivyRestart extends LabctlCommand<RestartCommandResult> {
  static override summary = 'Restart the Trivy service and wait until it answers again, directly and through HAProxy.'
  static override description = describe('One host at a time, so a fleet behind HAProxy keeps serving. Asks unless --yes. Safe to re-run.')
  static override examples = ['<%= config.bin %> trivy restart --host trivy-0 --yes']
  static override flags = { ...sshFlags, wait: Flags.integer({ summary: 'Seconds to wait for /healthz after the restart.', default: 120, min: 1, max: LIMITS.waitSeconds.max }) }

  async run(): Promise<RestartCommandResult> {
    const { flags } = await this.parse(TrivyRestart)
    const loaded = this.loadInventory(flags)
    const hosts = selectHosts(loaded.inventory, flags.host)
    this.note(`plan: restart ${loaded.inventory.trivy.serviceName} on ${hosts.map((h) => h.name).join(', ')}, one at a time, waiting for /healthz`)
    await this.confirmOrStop(flags, `Restart ${loaded.inventory.trivy.serviceName} on ${hosts.map((h) => h.name).join(', ')}?`, 'restarting interrupts scans')
    const remote = await this.openRemote(flags)
    const out: RestartResult[] = []
    for (const h of hosts) {
      const r = await restartService({ loaded, host: h, remote, waitMs: flags.wait * 1000, signal: this.abort.signal })
      this.log(`${h.name}: restarted, answering again after ${(r.downMs / 1000).toFixed(1)} s`)
      out.push(r)
    }
    return { hosts: out }
  }
}
