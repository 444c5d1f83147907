import { checkOutputPath, writeOutputFile } from '../../src/fs/write-output.js'
import { Flags } from '@oclif/core'
import { LabctlCommand, describe } from '../_base.js'
import { sshFlags } from '../_flags.js'
import { selectHosts } from '../../src/inventory/load.js'
import { hostCheck, toPrometheus, type HostCheck } from '../../src/trivy/check.js'
import { checkLine } from '../_render.js'
import { summarize, type CheckResult, type CheckSummary } from '../../src/checks/types.js'
import { LIMITS } from '../../src/inventory/schema.js'

export type CheckCommandResult = { lab: string; ok: boolean; summary: CheckSummary; checks: CheckResult[]; hosts: HostCheck[] }

export default class TrivyCheck extends LabctlCommand<CheckCommandResult> {
  static override summary = 'Check disk, DB freshness, the DB file and the service journal on each scanner host.'
  static override description = describe(
    `One SSH command per host reads: disk use of the cache dir's filesystem and the cache's own size (warn/crit
thresholds), db/metadata.json against the freshness SLA, trivy.db (present, non-empty, a bbolt file, not
exclusively locked), and panics / errors / invalid-token / 5xx lines in the service journal since --since.
--prometheus FILE writes node_exporter textfile metrics (DB age, disk ratio, check status) atomically.`,
  )
  static override examples = ['<%= config.bin %> trivy check --lab sandbox', '<%= config.bin %> trivy check --prometheus /var/lib/node_exporter/textfile/labctl_trivy.prom']
  static override flags = {
    ...sshFlags,
    since: Flags.string({ summary: 'Journal window for the error counts (journalctl --since syntax).', default: '-1h' }),
    prometheus: Flags.string({ summary: 'Also write metrics in node_exporter textfile format to this file.' }),
    timeout: Flags.integer({ summary: 'Timeout per host in milliseconds.', default: 30_000, min: 100, max: LIMITS.timeoutMs.max }),
  }

  async run(): Promise<CheckCommandResult> {
    const { flags } = await this.parse(TrivyCheck)
    if (flags.prometheus) checkOutputPath(flags.prometheus, { flag: '--prometheus' })
    const loaded = this.loadInventory(flags)
    const remote = await this.openRemote(flags)
    const hosts = await Promise.all(
      selectHosts(loaded.inventory, flags.host).map((host) => hostCheck({ loaded, host, remote, since: flags.since, timeoutMs: flags.timeout })),
    )
    const checks = hosts.flatMap((h) => h.checks)
    const summary = summarize(checks)
    if (flags.prometheus) {
      writeOutputFile(flags.prometheus, toPrometheus(hosts), { flag: '--prometheus' })
    }
    for (const c of checks) this.log(checkLine({ ...c, name: `${c.host} ${c.name}` }))
    this.log(`\n${summary.fail ? 'FAILED' : 'PASSED'}: ${summary.pass} passed, ${summary.fail} failed${summary.warn ? `, ${summary.warn} warnings` : ''}`)
    if (summary.fail) this.markFailed()
    return { lab: loaded.inventory.name, ok: summary.fail === 0, summary, checks, hosts }
  }
}
