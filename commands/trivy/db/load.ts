import { Flags } from '@oclif/core'
import { LabctlCommand, describe } from '../../_base.js'
import { sshFlags } from '../../_flags.js'
import { UsageError } from '../../../src/errors.js'
import { selectHosts } from '../../../src/inventory/load.js'
import { archivesFromLayout, checkArchive, loadDb, loadPlan, type CheckedArchive, type LoadResult } from '../../../src/db/load.js'

export type LoadCommandResult = { dryRun: boolean; archives: Array<Omit<CheckedArchive, 'file'>>; plan: Record<string, string[]>; results: LoadResult[] }

export default class TrivyDbLoad extends LabctlCommand<LoadCommandResult> {
  static override summary = "Populate a scanner host's DB cache by hand from db.tar.gz / javadb.tar.gz or an OCI layout (air gap)."
  static override description = describe(
    `Checks each archive first (exactly trivy.db + metadata.json — or trivy-java.db + metadata.json —, metadata
Version 2 (java: 1), a real bbolt file), then per host: sends it over SFTP next to the cache, checks its sha256
and unpacks it there, stops the service, swaps CACHE/db (or CACHE/java-db) in by rename keeping the previous one
as db.prev-<time>, starts the service and proves it (/version shows the archive's UpdatedAt, a canary scan finds
CVEs). On any failure after the stop the previous DB is put back and the service started. A broken archive
changes nothing. --from-dir takes the layout written by \`labctl trivy db mirror --to-dir\`.`,
  )
  static override examples = [
    '<%= config.bin %> trivy db load --host trivy-0 --file db.tar.gz --dry-run',
    '<%= config.bin %> trivy db load --host trivy-0 --from-dir /media/usb/trivy-dbs --yes',
  ]
  static override flags = {
    ...sshFlags,
    file: Flags.string({ summary: 'A db.tar.gz or javadb.tar.gz (repeatable).', multiple: true }),
    'from-dir': Flags.string({ summary: 'An OCI layout from `trivy db mirror --to-dir` (its trivy-db and trivy-java-db).' }),
    'dry-run': Flags.boolean({ summary: 'Check the archives, show the plan and stop.' }),
    wait: Flags.integer({ summary: 'Seconds to wait for the server to show the new DB.', default: 120, min: 1 }),
    'token-file': Flags.string({ summary: 'Token for the canary scan: a file, or "-" for stdin.', env: 'LABCTL_TOKEN_FILE' }),
  }

  async run(): Promise<LoadCommandResult> {
    const { flags } = await this.parse(TrivyDbLoad)
    if (!flags.file?.length && !flags['from-dir']) throw new UsageError('nothing to load', { suggestion: 'pass --file db.tar.gz or --from-dir DIR' })
    const loaded = this.loadInventory(flags)
    const hosts = selectHosts(loaded.inventory, flags.host)
    const inputs = [...(flags.file ?? []).map((f) => ({ file: f, origin: f })), ...(flags['from-dir'] ? await archivesFromLayout(flags['from-dir']) : [])]
    const archives: CheckedArchive[] = []
    for (const i of inputs) archives.push(await checkArchive(i.file, i.origin))
    const kinds = archives.map((a) => a.kind)
    if (new Set(kinds).size !== kinds.length) throw new UsageError(`two archives of the same kind (${kinds.join(', ')})`, { suggestion: 'pass one db.tar.gz and at most one javadb.tar.gz' })
    for (const a of archives) this.note(`checked ${a.origin}: ${a.kind}, metadata Version ${a.metadata.Version}, UpdatedAt ${a.metadata.UpdatedAt}, ${a.dbBytes} bytes of bbolt`)
    const plan = Object.fromEntries(hosts.map((h) => [h.name, loadPlan(loaded, h, archives)]))
    for (const [h, steps] of Object.entries(plan)) {
      this.note(`plan for ${h}:`)
      steps.forEach((s, i) => this.note(`  ${i + 1}. ${s}`))
    }
    const shown = archives.map(({ file: _f, ...rest }) => rest)
    if (flags['dry-run']) return { dryRun: true, archives: shown, plan, results: [] }
    await this.confirmOrStop(flags, `Load this DB into ${hosts.map((h) => h.name).join(', ')} (the service is stopped meanwhile)?`, `db load stops ${hosts.map((h) => h.name).join(', ')} and replaces its DB`)
    const remote = await this.openRemote(flags)
    const results: LoadResult[] = []
    // One host at a time: the rest of a fleet keeps serving.
    for (const h of hosts) {
      const r = await loadDb(loaded, h, archives, { waitMs: flags.wait * 1000, tokenFile: flags['token-file'], remote, signal: this.abort.signal }, (m) => this.note(`• ${m}`))
      for (const s of r.steps) this.log(`ok    ${h.name} ${s.step.padEnd(22)} ${s.detail} (${s.durationMs} ms)`)
      this.log(`${h.name}: loaded ${r.loaded.map((l) => `${l.kind} (UpdatedAt ${l.updatedAt})`).join(', ')}, downtime ${(r.downtimeMs / 1000).toFixed(1)} s${r.loaded.some((l) => l.previous) ? `, previous kept at ${r.loaded.map((l) => l.previous).filter(Boolean).join(', ')}` : ''}`)
      results.push(r)
    }
    return { dryRun: false, archives: shown, plan, results }
  }
}
