import { Flags } from '@oclif/core'
import { LabctlCommand, describe } from '../../_base.js'
import { sshFlags } from '../../_flags.js'
import { selectHosts } from '../../../src/inventory/load.js'
import { loadAuth } from '../../../src/db/auth.js'
import { short, size } from '../../../src/db/progress.js'
import { dbStatus, type DbStatusResult } from '../../../src/db/status.js'

export default class TrivyDbStatus extends LabctlCommand<DbStatusResult> {
  static override summary = "The vulnerability DB on each scanner host and in the lab mirror: versions, dates, age against the SLA."
  static override description = describe(
    `Per host: the DB's Version, UpdatedAt, NextUpdate, DownloadedAt (from /version and db/metadata.json over SSH),
trivy.db's size and age against thresholds.dbFreshnessHours, and the repositories the server pulls from (the
env file's TRIVY_DB_REPOSITORY / the unit's --db-repository, and --skip-db-update). With a mirror: section,
the lab mirror per repository: tag, manifest digest, layer media type and when its DB was built (metadata.json
inside the trivy-db / java-db layer, else the created annotation). A stale server behind a fresh mirror is told
apart from a stale mirror. Exit 3 when a host's DB or a mirrored repository is stale or missing.`,
  )
  static override examples = ['<%= config.bin %> trivy db status', '<%= config.bin %> trivy db status --host trivy-0 --json']
  static override flags = {
    ...sshFlags,
    timeout: Flags.integer({ summary: 'Timeout per host and per registry request in milliseconds.', default: 30_000, min: 100 }),
  }

  async run(): Promise<DbStatusResult> {
    const { flags } = await this.parse(TrivyDbStatus)
    const loaded = this.loadInventory(flags)
    const hosts = selectHosts(loaded.inventory, flags.host)
    const remote = await this.openRemote(flags)
    const r = await dbStatus(loaded, hosts, { timeoutMs: flags.timeout, auth: loadAuth(), remote })
    for (const h of r.hosts) {
      const db = h.server?.db ?? h.metadata
      this.log(`${h.host}: ${h.verdict.toUpperCase()}${h.ageHours !== undefined ? `, age ${h.ageHours} h (SLA ${r.slaHours} h)` : ''}`)
      if (db) this.log(`  DB Version ${db.Version}, UpdatedAt ${db.UpdatedAt}, NextUpdate ${db.NextUpdate ?? '-'}, DownloadedAt ${db.DownloadedAt ?? '-'}${h.dbBytes !== undefined ? `, trivy.db ${size(h.dbBytes)}` : ''}`)
      if (h.server) this.log(`  server ${h.server.version}${h.server.db ? '' : ' (no DB in /version)'}`)
      this.log(`  pulls from: ${h.repositories.length ? h.repositories.join(', ') : "Trivy's default repositories"}${h.pullsFromMirror === true ? ' (the lab mirror)' : h.pullsFromMirror === false ? ' (NOT the lab mirror)' : ''}${h.skipDbUpdate ? '; --skip-db-update (never pulls)' : ''}`)
      for (const p of h.problems) this.log(`  problem: ${p}`)
      if (h.advice) this.log(`  next: ${h.advice}`)
    }
    if (r.mirror.length) {
      this.log(`mirror ${loaded.inventory.mirror!.registry}:`)
      for (const m of r.mirror) {
        if (m.error) this.log(`  ${m.artifact.padEnd(8)} ${m.ref}: ERROR ${m.error}`)
        else if (!m.present) this.log(`  ${m.artifact.padEnd(8)} ${m.ref}: MISSING (run \`labctl trivy db mirror --only ${m.artifact}\`)`)
        else
          this.log(
            `  ${m.artifact.padEnd(8)} ${m.ref}@${short(m.manifestDigest!)} ${m.layerMediaType ?? '-'} ${m.layerSize !== undefined ? size(m.layerSize) : ''}, built ${m.builtAt ?? 'unknown'}${m.ageHours !== undefined ? ` (${m.ageHours} h)` : ''}${m.stale ? ' STALE' : ''}`,
          )
      }
    }
    if (!r.ok) this.markFailed()
    return r
  }
}
