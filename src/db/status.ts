// `labctl trivy db status`: per scanner host, the DB the server has (/version and metadata.json over SSH,
// size, age against the SLA) and where it pulls from (env file / unit flags); the lab mirror's state for
// each repository (tag, manifest digest, layer media type, build time). Stale mirror and stale server are
// told apart: a fresh mirror behind a stale server means the server does not pull (or cannot); a stale
// mirror means `trivy db mirror` has not run.
import type { Dispatcher } from 'undici'
import { z } from 'zod'
import { inventoryPath, type LoadedInventory } from '../inventory/load.js'
import type { ScannerHost } from '../inventory/schema.js'
import { errorMessage, oneLine } from '../errors.js'
import { describeNetError, labAgent } from '../net/http.js'
import { getVersion } from '../trivy/api.js'
import { sections } from '../trivy/remote.js'
import type { AuthSource } from './auth.js'
import type { DbRemote } from './host.js'
import { ARTIFACTS, ARTIFACT_KEYS, formatRef, isIndex, mirrorRef, parseRef, type ArtifactKey } from './ref.js'
import { RegistryClient, type Descriptor } from './registry.js'
import { mirrorAgents } from './settings.js'
import { tarGzEntries } from './tar.js'
import { dbAge, futureDbProblem } from '../trivy/freshness.js'

const MetaSchema = z.object({ Version: z.number(), NextUpdate: z.string().optional(), UpdatedAt: z.string(), DownloadedAt: z.string().optional() })
export type DbMeta = z.infer<typeof MetaSchema>

export type MirrorRepoState = {
  artifact: ArtifactKey
  ref: string
  present: boolean
  manifestDigest?: string
  mediaType?: string
  layerMediaType?: string
  layerSize?: number
  /** When the DB in the copy was built: metadata.json UpdatedAt in the layer (db, java-db), else the created annotation. */
  builtAt?: string
  builtFrom?: 'metadata.json' | 'annotation'
  ageHours?: number
  stale?: boolean
  error?: string
}

export type HostDbState = {
  host: string
  server?: { version: string; db?: DbMeta }
  serverError?: string
  metadata?: DbMeta
  metadataError?: string
  dbBytes?: number
  ageHours?: number
  stale: boolean
  repositories: string[]
  skipDbUpdate: boolean
  pullsFromMirror?: boolean
  verdict: 'fresh' | 'stale-server' | 'stale-mirror' | 'stale' | 'future' | 'no-db' | 'unreachable'
  advice?: string
  problems: string[]
}

export type DbStatusResult = { ok: boolean; slaHours: number; hosts: HostDbState[]; mirror: MirrorRepoState[] }

const STATUS_SCRIPT = `
dir=$1; env=$2; svc=$3
echo "@@meta"; cat "$dir/db/metadata.json" 2>/dev/null || echo MISSING
echo "@@size"; stat -c %s "$dir/db/trivy.db" 2>/dev/null || echo MISSING
echo "@@env"; grep -E '^(TRIVY_DB_REPOSITORY|TRIVY_SKIP_DB_UPDATE)=' "$env" 2>/dev/null
echo "@@unit"; systemctl cat "$svc" 2>/dev/null | grep -E '^ExecStart='
`

/** The repositories and --skip-db-update from env-file lines and ExecStart lines (flags win, as in Trivy). */
export function pullSettings(envText: string, unitText: string): { repositories: string[]; skipDbUpdate: boolean } {
  let repositories: string[] = []
  let skip = false
  for (const l of envText.split('\n')) {
    const m = /^(TRIVY_DB_REPOSITORY|TRIVY_SKIP_DB_UPDATE)=(.*)$/.exec(l.trim())
    if (!m) continue
    const v = m[2]!.replace(/^["']|["']$/g, '').trim()
    if (m[1] === 'TRIVY_DB_REPOSITORY') repositories = v.split(',').map((s) => s.trim()).filter(Boolean)
    else skip = v === 'true' || v === '1'
  }
  for (const l of unitText.split('\n')) {
    if (!l.startsWith('ExecStart=')) continue
    const args = l.slice('ExecStart='.length).trim().split(/\s+/)
    const flagRepos: string[] = []
    args.forEach((a, i) => {
      if (a === '--db-repository' && args[i + 1]) flagRepos.push(...args[i + 1]!.split(','))
      else if (a.startsWith('--db-repository=')) flagRepos.push(...a.slice(16).split(','))
      else if (a === '--skip-db-update' || a === '--skip-db-update=true') skip = true
    })
    if (flagRepos.length) repositories = flagRepos
  }
  return { repositories, skipDbUpdate: skip }
}

const ageHours = (iso: string | undefined, now: number): number | undefined => {
  if (!iso || iso.startsWith('0001-')) return undefined
  const t = Date.parse(iso)
  return Number.isFinite(t) ? (now - t) / 3_600_000 : undefined
}

/** Reads metadata.json out of a DB layer (streamed, stops as soon as it is found; bounded). */
async function layerMetadata(client: RegistryClient, repo: string, layer: Descriptor): Promise<DbMeta | undefined> {
  const res = await client.send('GET', `/v2/${repo}/blobs/${layer.digest}`, { scope: RegistryClient.pullScope(repo), what: `blob ${layer.digest}` })
  if (res.statusCode !== 200) {
    await res.body.dump()
    return undefined
  }
  try {
    for await (const e of tarGzEntries(res.body, { keepBytes: 64 * 1024, maxEntries: 16, what: `${repo} layer` })) {
      if (e.name.replace(/^\.\//, '') === 'metadata.json' && e.data) return MetaSchema.parse(JSON.parse(e.data.toString('utf8')))
    }
    return undefined
  } finally {
    res.body.destroy()
  }
}

export async function mirrorState(
  m: { registry: string; namespace: string; insecure?: boolean },
  o: { auth: AuthSource; dispatcher?: Dispatcher; timeoutMs: number; slaHours: number; now?: number; artifacts?: ArtifactKey[] },
): Promise<MirrorRepoState[]> {
  const now = o.now ?? Date.now()
  const client = new RegistryClient({ registry: m.registry, ...(m.insecure ? { insecure: true } : {}), timeoutMs: o.timeoutMs, auth: o.auth, ...(o.dispatcher ? { dispatcher: o.dispatcher } : {}) })
  return Promise.all(
    (o.artifacts ?? ARTIFACT_KEYS).map(async (key): Promise<MirrorRepoState> => {
      const ref = mirrorRef(m, key)
      const out: MirrorRepoState = { artifact: key, ref: formatRef(ref), present: false }
      try {
        if (!(await client.headManifest(ref.repository, ref.reference))) return out
        const man = await client.getManifest(ref.repository, ref.reference)
        out.present = true
        out.manifestDigest = man.digest
        out.mediaType = man.mediaType
        let json = JSON.parse(man.bytes.toString('utf8')) as { layers?: Descriptor[]; manifests?: Descriptor[]; annotations?: Record<string, string> }
        if (isIndex(man.mediaType) && json.manifests?.[0]) json = JSON.parse((await client.getManifest(ref.repository, json.manifests[0].digest)).bytes.toString('utf8')) as typeof json
        const layer = json.layers?.[0]
        if (layer) {
          out.layerMediaType = layer.mediaType
          out.layerSize = layer.size
        }
        if (layer && (key === 'db' || key === 'java-db')) {
          const meta = await layerMetadata(client, ref.repository, layer)
          if (meta) {
            out.builtAt = meta.UpdatedAt
            out.builtFrom = 'metadata.json'
          }
        }
        const created = json.annotations?.['org.opencontainers.image.created']
        if (!out.builtAt && created) {
          out.builtAt = created
          out.builtFrom = 'annotation'
        }
        const age = ageHours(out.builtAt, now)
        if (age !== undefined) {
          out.ageHours = Math.round(age * 10) / 10
          out.stale = age > o.slaHours
        }
      } catch (err) {
        out.error = oneLine(errorMessage(err), 200)
      }
      return out
    }),
  )
}

export async function hostDbState(
  loaded: LoadedInventory,
  host: ScannerHost,
  mirror: MirrorRepoState[] | undefined,
  o: { timeoutMs: number; remote: DbRemote; now?: number },
): Promise<HostDbState> {
  const inv = loaded.inventory
  const t = inv.trivy
  const now = o.now ?? Date.now()
  const remote = o.remote
  const base = host.debugUrl ? new URL(host.debugUrl).origin : t.publicUrl
  const caFile = t.caBundle ? inventoryPath(loaded, t.caBundle) : undefined
  const agent = labAgent({ dnsServers: inv.dns.servers, dnsTimeoutMs: inv.dns.timeoutMs, caFile, connectTimeoutMs: o.timeoutMs })
  const problems: string[] = []
  const state: HostDbState = { host: host.name, stale: false, repositories: [], skipDbUpdate: false, verdict: 'fresh', problems }
  try {
    const [r, v] = await Promise.allSettled([
      remote.run(host, ['sh', '-c', STATUS_SCRIPT, 'labctl-db-status', t.cacheDir, t.envFile, t.serviceName], { sudo: true, timeoutMs: o.timeoutMs, check: true }),
      getVersion(base, { dispatcher: agent, timeoutMs: o.timeoutMs }),
    ])
    if (v.status === 'fulfilled') state.server = { version: v.value.Version, ...(v.value.VulnerabilityDB ? { db: v.value.VulnerabilityDB } : {}) }
    else {
      state.serverError = `/version: ${describeNetError(v.reason, o.timeoutMs)}`
      problems.push(state.serverError)
    }
    if (r.status === 'rejected') {
      problems.push(`ssh: ${oneLine(errorMessage(r.reason), 200)}`)
      if (!state.server) state.verdict = 'unreachable'
    } else {
      const s = sections(r.value.stdout)
      const metaText = (s.meta ?? '').trim()
      if (metaText && metaText !== 'MISSING') {
        try {
          state.metadata = MetaSchema.parse(JSON.parse(metaText))
        } catch {
          state.metadataError = 'metadata.json is not valid'
        }
      } else state.metadataError = `${t.cacheDir}/db/metadata.json is missing`
      const size = Number((s.size ?? '').trim())
      if (Number.isFinite(size) && (s.size ?? '').trim() !== 'MISSING') state.dbBytes = size
      Object.assign(state, pullSettings(s.env ?? '', s.unit ?? ''))
      if (state.metadataError) problems.push(state.metadataError)
    }
  } finally {
    await agent.close()
  }
  if (!state.repositories.length && t.dbRepositories.length) state.repositories = [...t.dbRepositories]
  const dbMirror = mirror?.find((m) => m.artifact === 'db')
  if (dbMirror && state.repositories.length) {
    const want = dbMirror.ref
    state.pullsFromMirror = state.repositories.some((r) => {
      try {
        return formatRef(parseRef(r)) === want
      } catch {
        return false
      }
    })
  }
  const updatedAt = state.server?.db?.UpdatedAt ?? state.metadata?.UpdatedAt
  const sla = inv.thresholds.dbFreshnessHours
  const judged = dbAge(updatedAt, sla, now)
  if (judged.kind === 'unknown') {
    if (state.verdict !== 'unreachable') {
      state.verdict = 'no-db'
      state.stale = true
      state.advice = `the server has no DB: \`labctl trivy db load --host ${host.name} --from-dir DIR\` or \`labctl trivy reset-db --host ${host.name}\``
    }
    return state
  }
  state.ageHours = Math.round(judged.hours * 10) / 10
  if (judged.kind === 'future') {
    // Not fresh: a wrong clock or a forged answer. Reported as a problem of its own, not as staleness.
    const f = futureDbProblem(updatedAt!, judged.hours)
    state.stale = true
    state.verdict = 'future'
    state.advice = f.suggestion
    problems.push(f.message)
    return state
  }
  state.stale = judged.kind === 'stale'
  if (!state.stale) return state
  if (!dbMirror || !dbMirror.present || dbMirror.stale === undefined) {
    state.verdict = 'stale'
    state.advice = dbMirror ? 'the mirror holds no readable DB: `labctl trivy db mirror`' : 'no mirror: section in the inventory to compare with; check the server\'s DB repository'
  } else if (dbMirror.stale) {
    state.verdict = 'stale-mirror'
    state.advice = `the lab mirror is stale too (built ${dbMirror.builtAt}): refresh it with \`labctl trivy db mirror\` (or --from-dir), then the server picks it up`
  } else {
    state.verdict = 'stale-server'
    const why = state.skipDbUpdate ? 'it runs with --skip-db-update' : state.pullsFromMirror === false ? `it pulls from ${state.repositories.join(', ') || "Trivy's default repositories"}, not ${dbMirror.ref}` : 'it has not pulled the newer copy'
    state.advice = `the mirror is fresh (built ${dbMirror.builtAt}) but the server is not: ${why}; \`labctl trivy reset-db --host ${host.name}\` or \`labctl trivy db load --host ${host.name}\``
  }
  problems.push(`DB is stale: UpdatedAt ${updatedAt} (${state.ageHours} h ago; SLA ${sla} h)`)
  return state
}

export async function dbStatus(
  loaded: LoadedInventory,
  hosts: ScannerHost[],
  o: { timeoutMs: number; auth: AuthSource; remote: DbRemote; now?: number },
): Promise<DbStatusResult> {
  const inv = loaded.inventory
  const slaHours = inv.thresholds.dbFreshnessHours
  let mirror: MirrorRepoState[] | undefined
  if (inv.mirror) {
    const agents = mirrorAgents(loaded, o.timeoutMs)
    try {
      mirror = await mirrorState(inv.mirror, { auth: o.auth, dispatcher: agents.target, timeoutMs: o.timeoutMs, slaHours, ...(o.now ? { now: o.now } : {}) })
    } finally {
      await Promise.allSettled([agents.target.close(), agents.source.close()])
    }
  }
  const states = await Promise.all(hosts.map((h) => hostDbState(loaded, h, mirror, o)))
  const ok = states.every((s) => !s.stale && s.verdict !== 'unreachable') && (mirror ?? []).every((m) => m.present && !m.stale && !m.error)
  return { ok, slaHours, hosts: states, mirror: mirror ?? [] }
}

export const ARTIFACT_NAMES = Object.fromEntries(ARTIFACT_KEYS.map((k) => [k, ARTIFACTS[k].name])) as Record<ArtifactKey, string>
