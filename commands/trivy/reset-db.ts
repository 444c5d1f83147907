import { Flags } from '@oclif/core'
import { LabctlCommand, describe } from '../_base.js'
import { sshFlags } from '../_flags.js'
import { selectHosts } from '../../src/inventory/load.js'
import { resetDb, resetPlan, type ResetDbResult } from '../../src/trivy/reset-db.js'
import { LIMITS } from '../../src/inventory/schema.js'

export type ResetDbCommandResult = { dryRun: boolean; plan: Record<string, string[]>; results: ResetDbResult[] }

export default class TrivyResetDb extends LabctlCommand<ResetDbCommandResult> {
  static override summary = "Rebuild a scanner's vulnerability DB: the seed's fix for 500s and a corrupted DB."
  static override description = describe(
    `Stops the service, moves the DB aside for forensics (or --purge: \`trivy clean --vuln-db\`), optionally clears the
scan cache, fetches a fresh DB from the offline mirror when trivy.dbRepositories is set (else the server downloads it
at start), starts the service and waits until /version shows a fresh DB and a canary scan passes. Reports the
downtime. Asks for the host name to be typed back unless --yes. Safe to re-run.`,
  )
  static override examples = ['<%= config.bin %> trivy reset-db --host trivy-0', '<%= config.bin %> trivy reset-db --host trivy-0 --yes --scan-cache', '<%= config.bin %> trivy reset-db --dry-run']
  static override flags = {
    ...sshFlags,
    purge: Flags.boolean({ summary: 'Delete the DB (trivy clean --vuln-db) instead of moving it aside.' }),
    'scan-cache': Flags.boolean({ summary: 'Also clear the scan cache (trivy clean --scan-cache).' }),
    'dry-run': Flags.boolean({ summary: 'Show the plan and stop.' }),
    wait: Flags.integer({ summary: 'Seconds to wait for the fresh DB after the start.', default: 300, min: 1, max: LIMITS.waitSeconds.max }),
    'token-file': Flags.string({ summary: 'Token for the canary scan: a file, or "-" for stdin.', env: 'LABCTL_TOKEN_FILE' }),
  }

  async run(): Promise<ResetDbCommandResult> {
    const { flags } = await this.parse(TrivyResetDb)
    const loaded = this.loadInventory(flags)
    const hosts = selectHosts(loaded.inventory, flags.host)
    const plan = Object.fromEntries(hosts.map((host) => [host.name, resetPlan({ loaded, host, purge: flags.purge, scanCache: flags['scan-cache'] })]))
    for (const [h, steps] of Object.entries(plan)) {
      this.note(`plan for ${h}:`)
      steps.forEach((s, i) => this.note(`  ${i + 1}. ${s}`))
    }
    if (flags['dry-run']) return { dryRun: true, plan, results: [] }
    const results: ResetDbResult[] = []
    const remote = await this.openRemote(flags)
    // One host at a time: a fleet behind HAProxy keeps serving while each host is reset.
    for (const h of hosts) {
      await this.typeBack(flags, h.name, `Type the host name (${h.name}) to reset its DB:`, `reset-db stops ${h.name} and replaces its DB`, 'rerun with --yes, or from a terminal to type the host name back')
      const r = await resetDb({
        loaded,
        host: h,
        remote,
        purge: flags.purge,
        scanCache: flags['scan-cache'],
        waitMs: flags.wait * 1000,
        tokenFile: flags['token-file'],
        signal: this.abort.signal,
        progress: (m) => this.note(`• ${m}`),
      })
      for (const s of r.steps) this.log(`ok    ${h.name} ${s.step.padEnd(20)} ${s.detail} (${s.durationMs} ms)`)
      this.log(`${h.name}: DB reset, downtime ${(r.downtimeMs / 1000).toFixed(1)} s${r.movedTo ? `, old DB kept at ${r.movedTo}` : ''}`)
      results.push(r)
    }
    return { dryRun: false, plan, results }
  }
}
