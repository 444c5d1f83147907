import { existsSync } from 'node:fs'
import { Flags } from '@oclif/core'
import { LabctlCommand, describe } from '../../_base.js'
import { UsageError } from '../../../src/errors.js'
import { resolveInventoryPath, type LoadedInventory } from '../../../src/inventory/load.js'
import { loadAuth } from '../../../src/db/auth.js'
import { mirror, type MirrorResult, type MirrorTarget, type Side } from '../../../src/db/mirror.js'
import { progressRenderer, short, size } from '../../../src/db/progress.js'
import { mirrorAgents, mirrorSources, parseOnly, requireMirror } from '../../../src/db/settings.js'

export default class TrivyDbMirror extends LabctlCommand<MirrorResult> {
  static override summary = "Copy Trivy's OCI databases (trivy-db, trivy-java-db, checks bundle) to the lab registry, byte for byte."
  static override description = describe(
    `Copies trivy-db:2, trivy-java-db:1 and trivy-checks:1 from the public registries (or the inventory's
mirror.sources, or --db-source/--java-db-source/--checks-source) to the inventory's mirror.registry as
NAMESPACE/NAME:TAG: manifests with their exact bytes and media type, configs, layers, annotations and
artifactType. Every blob and manifest is checked against its sha256 before anything is pushed; a mismatch
stops with nothing tagged. Blobs already in the registry are skipped (HEAD), so a second run copies nothing.
For a sneakernet, --to-dir DIR writes an OCI image layout instead, and --from-dir DIR pushes one.
Registry credentials come from REGISTRY_AUTH_FILE or docker's config.json (basic or token auth), never
from a flag, and are never printed. Point the server at the copy with trivy.dbRepositories, and the
clients with --java-db-repository / --checks-bundle-repository.`,
  )
  static override examples = [
    '<%= config.bin %> trivy db mirror --dry-run',
    '<%= config.bin %> trivy db mirror',
    '<%= config.bin %> trivy db mirror --to-dir /media/usb/trivy-dbs   # on the connected side',
    '<%= config.bin %> trivy db mirror --from-dir /media/usb/trivy-dbs # in the lab',
  ]
  static override flags = {
    only: Flags.string({ summary: 'Comma list of artifacts: db, java-db, checks (default all).' }),
    'db-source': Flags.string({ summary: 'Source of trivy-db (default mirror.sources.db or ghcr.io/aquasecurity/trivy-db:2).' }),
    'java-db-source': Flags.string({ summary: 'Source of trivy-java-db (default ghcr.io/aquasecurity/trivy-java-db:1).' }),
    'checks-source': Flags.string({ summary: 'Source of the checks bundle (default ghcr.io/aquasecurity/trivy-checks:1).' }),
    'to-dir': Flags.string({ summary: 'Write an OCI image layout to this directory instead of pushing.', exclusive: ['from-dir'] }),
    'from-dir': Flags.string({ summary: 'Push from an OCI image layout written by --to-dir.', exclusive: ['to-dir'] }),
    'mount-from': Flags.string({ summary: 'Try a cross-repository mount from this repository of the lab registry first.' }),
    'dry-run': Flags.boolean({ summary: 'List what would be copied (reads manifests, HEADs blobs) and stop.' }),
    timeout: Flags.integer({ summary: 'Timeout per registry request in seconds (default mirror.timeoutMs or 60).', min: 1 }),
  }

  async run(): Promise<MirrorResult> {
    const { flags } = await this.parse(TrivyDbMirror)
    // The connected side of a sneakernet may have no inventory at all: --to-dir works without one.
    const where = resolveInventoryPath({ config: flags.config, lab: flags.lab })
    const loaded: LoadedInventory | undefined = flags['to-dir'] && where.how === 'default' && !existsSync(where.path) ? undefined : this.loadInventory(flags)
    const section = loaded?.inventory.mirror
    const timeoutMs = flags.timeout ? flags.timeout * 1000 : (section?.timeoutMs ?? 60_000)
    const to: MirrorTarget = flags['to-dir'] ? { kind: 'dir', dir: flags['to-dir'] } : (() => {
      const m = requireMirror(loaded)
      return { kind: 'registry', registry: m.registry, namespace: m.namespace, ...(m.insecure ? { insecure: true } : {}) }
    })()
    const from: Side = flags['from-dir'] ? { kind: 'dir', dir: flags['from-dir'] } : { kind: 'registry' }
    if (flags['from-dir'] && (flags['db-source'] || flags['java-db-source'] || flags['checks-source'])) {
      throw new UsageError('--from-dir and --*-source both say where to copy from', { suggestion: 'use one of them' })
    }
    const agents = mirrorAgents(loaded, timeoutMs)
    const tty = Boolean(process.stderr.isTTY) && !this.jsonEnabled()
    const render = progressRenderer((s) => { if (!this.jsonEnabled()) process.stderr.write(s) }, tty)
    try {
      const result = await mirror({
        artifacts: parseOnly(flags.only),
        sources: mirrorSources(section, { db: flags['db-source'], 'java-db': flags['java-db-source'], checks: flags['checks-source'] }),
        from,
        to,
        dryRun: flags['dry-run'],
        mountFrom: flags['mount-from'],
        timeoutMs,
        auth: loadAuth(),
        sourceDispatcher: agents.source,
        targetDispatcher: agents.target,
        signal: this.abort.signal,
        progress: render.on,
      })
      render.end()
      for (const a of result.artifacts) {
        if (result.dryRun) {
          this.log(`${a.artifact.padEnd(8)} ${a.source} → ${a.target} (${a.mediaType}, ${short(a.manifestDigest)})${a.upToDate ? ': up to date' : ''}`)
          for (const b of a.blobs) this.log(`  ${b.role === 'manifest' ? 'push    ' : b.present ? 'present ' : 'copy    '} ${b.role.padEnd(8)} ${short(b.digest)} ${b.mediaType} ${size(b.size)}`)
        } else if (a.upToDate) {
          this.log(`${a.artifact.padEnd(8)} up to date  ${a.target}@${a.manifestDigest} (${a.skippedBlobs} blobs already there)`)
        } else {
          this.log(`${a.artifact.padEnd(8)} copied      ${a.target}@${a.manifestDigest} (${a.copiedBlobs} blobs, ${size(a.copiedBytes)}; ${a.skippedBlobs} already there)`)
        }
      }
      return result
    } finally {
      render.end()
      await Promise.allSettled([agents.source.close(), agents.target.close()])
    }
  }
}
