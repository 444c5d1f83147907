// `labctl trivy db mirror`: copies trivy-db, trivy-java-db and the checks bundle byte for byte — manifests
// (exact bytes and media type), configs, layers, annotations, artifactType — from a source registry or an
// OCI layout to the lab registry or an OCI layout. Every blob and manifest is verified by sha256 before
// anything is pushed; nothing is tagged unless every blob arrived intact; blobs already there are skipped.
import { createReadStream, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Dispatcher } from 'undici'
import { LabctlError, UsageError } from '../errors.js'
import { readBounded } from '../fs/read-bounded.js'
import type { AuthSource } from './auth.js'
import { blobPath, findInIndex, initLayout, tagInLayout } from './layout.js'
import { ARTIFACTS, MANIFEST_TYPES, formatRef, isIndex, mirrorRef, parseRef, type ArtifactKey, type ImageRef } from './ref.js'
import { DigestMismatchError, RegistryClient, fileDigest, sha256, verifyStreamToFile, type Descriptor, type Manifest } from './registry.js'

export type Side = { kind: 'registry' } | { kind: 'dir'; dir: string }
export type MirrorTarget = { kind: 'registry'; registry: string; namespace: string; insecure?: boolean } | { kind: 'dir'; dir: string }
export type MirrorOptions = {
  artifacts: ArtifactKey[]
  /** Source reference per artifact (registry sources). */
  sources: Record<ArtifactKey, string>
  from: Side
  to: MirrorTarget
  dryRun: boolean
  /** Cross-repo mount: try mounting each blob from this repository of the target registry first. */
  mountFrom?: string | undefined
  timeoutMs: number
  auth: AuthSource
  sourceDispatcher?: Dispatcher
  targetDispatcher?: Dispatcher
  signal?: AbortSignal
  progress?: (e: MirrorEvent) => void
}

export type MirrorEvent =
  | { type: 'artifact'; key: ArtifactKey; source: string; target: string }
  | { type: 'blob'; key: ArtifactKey; digest: string; size: number; title: string; action: 'present' | 'download' | 'upload' | 'mounted' }
  | { type: 'bytes'; key: ArtifactKey; digest: string; done: number; total: number; phase: 'download' | 'upload' }
  | { type: 'tagged'; key: ArtifactKey; target: string; digest: string }
  | { type: 'up-to-date'; key: ArtifactKey; target: string; digest: string }

export type BlobEntry = Descriptor & { role: 'config' | 'layer' | 'manifest'; present: boolean }
export type ArtifactResult = {
  artifact: ArtifactKey
  source: string
  target: string
  manifestDigest: string
  mediaType: string
  artifactType?: string
  layerMediaTypes: string[]
  annotations?: Record<string, string>
  blobs: BlobEntry[]
  copiedBytes: number
  copiedBlobs: number
  skippedBlobs: number
  tagged: boolean
  upToDate: boolean
}
export type MirrorResult = { dryRun: boolean; artifacts: ArtifactResult[] }

type ManifestJson = { mediaType?: string; artifactType?: string; config?: Descriptor; layers?: Descriptor[]; manifests?: Descriptor[]; annotations?: Record<string, string> }

/** A manifest and the manifests below it (one index level at most), each with its blobs. */
type Tree = { top: Manifest; json: ManifestJson; children: Array<{ m: Manifest; json: ManifestJson }> }

const layoutName = (key: ArtifactKey): string => `${ARTIFACTS[key].name}:${ARTIFACTS[key].tag}`

function parseManifest(m: Manifest, what: string): ManifestJson {
  let j: ManifestJson
  try {
    j = JSON.parse(m.bytes.toString('utf8')) as ManifestJson
  } catch {
    throw new LabctlError(`${what} is not JSON`, { code: 'BAD_MANIFEST', suggestion: 'check the source reference' })
  }
  if (!MANIFEST_TYPES.includes(m.mediaType as (typeof MANIFEST_TYPES)[number])) {
    throw new LabctlError(`${what} has media type "${m.mediaType}", not an OCI/Docker manifest or index`, { code: 'BAD_MANIFEST', suggestion: 'check the source reference' })
  }
  if (j.mediaType && j.mediaType !== m.mediaType) {
    throw new LabctlError(`${what}: its mediaType field (${j.mediaType}) differs from the one it was served with (${m.mediaType})`, { code: 'BAD_MANIFEST', suggestion: 'the source registry is misbehaving' })
  }
  // Descriptors come from the source: refuse anything that is not a plain sha256 digest and a size
  // before it can reach a URL path or a file name.
  for (const d of [...(j.config ? [j.config] : []), ...(j.layers ?? []), ...(j.manifests ?? [])]) {
    if (typeof d?.digest !== 'string' || !/^sha256:[a-f0-9]{64}$/.test(d.digest) || !Number.isSafeInteger(d.size) || d.size < 0 || typeof d.mediaType !== 'string') {
      throw new LabctlError(`${what} has a malformed descriptor (digest ${String(d?.digest).slice(0, 80)})`, { code: 'BAD_MANIFEST', suggestion: 'check the source; labctl copies sha256 digests only' })
    }
  }
  if ((j.layers ?? []).length > 256 || (j.manifests ?? []).length > 64) {
    throw new LabctlError(`${what} lists too many layers or manifests`, { code: 'BAD_MANIFEST', suggestion: 'check the source reference' })
  }
  return j
}

const blobsOf = (j: ManifestJson): Array<Descriptor & { role: 'config' | 'layer' }> => [
  ...(j.config ? [{ ...j.config, role: 'config' as const }] : []),
  ...(j.layers ?? []).map((l) => ({ ...l, role: 'layer' as const })),
]

/** Reads manifests from a registry or a layout, always verifying the digest. */
class Reader {
  constructor(
    private readonly side: Side,
    private readonly o: MirrorOptions,
  ) {}
  private clients = new Map<string, RegistryClient>()

  client(registry: string): RegistryClient {
    let c = this.clients.get(registry)
    if (!c) {
      c = new RegistryClient({ registry, timeoutMs: this.o.timeoutMs, auth: this.o.auth, ...(this.o.sourceDispatcher ? { dispatcher: this.o.sourceDispatcher } : {}), ...(this.o.signal ? { signal: this.o.signal } : {}) })
      this.clients.set(registry, c)
    }
    return c
  }

  describe(key: ArtifactKey): string {
    return this.side.kind === 'dir' ? `${this.side.dir}:${layoutName(key)}` : formatRef(parseRef(this.o.sources[key], `source of ${key}`))
  }

  async manifest(key: ArtifactKey, ref: string | undefined): Promise<Manifest> {
    if (this.side.kind === 'dir') {
      const dir = this.side.dir
      let d: Descriptor | undefined
      if (ref === undefined) {
        d = findInIndex(dir, layoutName(key))
        if (!d) throw new UsageError(`${dir} holds no ${layoutName(key)}`, { suggestion: `write it with \`labctl trivy db mirror --to-dir ${dir}\`, or leave ${key} out with --only` })
      }
      const digest = ref ?? d!.digest
      const file = blobPath(dir, digest)
      if (!existsSync(file)) throw new LabctlError(`${dir}: manifest ${digest} is missing from blobs/`, { code: 'LAYOUT_INCOMPLETE', suggestion: 'copy the whole directory again' })
      const bytes = readBounded(file, 'oci-manifest')
      const got = sha256(bytes)
      if (got !== digest) throw new DigestMismatchError(`${dir}: manifest of ${layoutName(key)}`, digest, got)
      const mediaType = d?.mediaType ?? (JSON.parse(bytes.toString('utf8')) as { mediaType?: string }).mediaType ?? ''
      return { bytes, mediaType, digest }
    }
    const r = parseRef(this.o.sources[key], `source of ${key}`)
    return this.client(r.registry).getManifest(r.repository, ref ?? r.reference)
  }

  async tree(key: ArtifactKey): Promise<Tree> {
    const top = await this.manifest(key, undefined)
    const what = `${this.describe(key)}`
    const json = parseManifest(top, what)
    const children: Tree['children'] = []
    if (isIndex(top.mediaType)) {
      for (const d of json.manifests ?? []) {
        const m = await this.manifest(key, d.digest)
        if (m.digest !== d.digest) throw new DigestMismatchError(`${what} → ${d.digest}`, d.digest, m.digest)
        const cj = parseManifest(m, `${what} → ${d.digest}`)
        if (isIndex(m.mediaType)) throw new LabctlError(`${what}: nested indexes are not supported`, { code: 'BAD_MANIFEST', suggestion: 'mirror the child index by digest' })
        children.push({ m, json: cj })
      }
    }
    return { top, json, children }
  }

  /** Fetches a blob into `file`, verifying size and digest. */
  async blob(key: ArtifactKey, d: Descriptor, file: string, progress: (n: number) => void): Promise<void> {
    if (this.side.kind === 'dir') {
      const src = blobPath(this.side.dir, d.digest)
      if (!existsSync(src)) throw new LabctlError(`${this.side.dir}: blob ${d.digest} is missing`, { code: 'LAYOUT_INCOMPLETE', suggestion: 'copy the whole directory again' })
      return verifyStreamToFile(createReadStream(src), d, file, `${this.side.dir}: blob ${d.digest}`, progress)
    }
    const r = parseRef(this.o.sources[key])
    return this.client(r.registry).downloadBlob(r.repository, d, file, progress)
  }
}

function targetRef(o: MirrorOptions, key: ArtifactKey): ImageRef | undefined {
  return o.to.kind === 'registry' ? mirrorRef(o.to, key) : undefined
}

export function describeTarget(o: Pick<MirrorOptions, 'to'>, key: ArtifactKey): string {
  return o.to.kind === 'registry' ? formatRef(mirrorRef(o.to, key)) : `${o.to.dir}:${layoutName(key)}`
}

export async function mirror(o: MirrorOptions): Promise<MirrorResult> {
  if (!o.artifacts.length) throw new UsageError('nothing to mirror', { suggestion: 'pass --only db,java-db,checks (or leave it out for all three)' })
  const reader = new Reader(o.from, o)
  const target =
    o.to.kind === 'registry'
      ? new RegistryClient({ registry: o.to.registry, ...(o.to.insecure ? { insecure: true } : {}), timeoutMs: o.timeoutMs, auth: o.auth, ...(o.targetDispatcher ? { dispatcher: o.targetDispatcher } : {}), ...(o.signal ? { signal: o.signal } : {}) })
      : undefined
  if (o.to.kind === 'dir' && !o.dryRun) initLayout(o.to.dir)
  if (target && !o.dryRun) await target.ping()
  const results: ArtifactResult[] = []
  for (const key of o.artifacts) {
    if (o.signal?.aborted) throw o.signal.reason
    results.push(await mirrorOne(o, key, reader, target))
  }
  return { dryRun: o.dryRun, artifacts: results }
}

async function present(o: MirrorOptions, target: RegistryClient | undefined, repo: string, d: Descriptor): Promise<boolean> {
  if (target) return target.hasBlob(repo, d.digest, RegistryClient.pushScope(repo))
  if (o.to.kind !== 'dir') return false
  const file = blobPath(o.to.dir, d.digest)
  if (!existsSync(file)) return false
  const got = await fileDigest(file)
  return got.digest === d.digest && got.size === d.size
}

async function mirrorOne(o: MirrorOptions, key: ArtifactKey, reader: Reader, target: RegistryClient | undefined): Promise<ArtifactResult> {
  const source = reader.describe(key)
  const dest = describeTarget(o, key)
  o.progress?.({ type: 'artifact', key, source, target: dest })
  const tree = await reader.tree(key)
  const tref = targetRef(o, key)
  const repo = tref?.repository ?? ''

  // Everything below the tag: child manifests and every blob, with their presence at the target.
  const blobs: BlobEntry[] = []
  const seen = new Set<string>()
  const allJson = [tree.json, ...tree.children.map((c) => c.json)]
  for (const j of allJson) {
    for (const b of blobsOf(j)) {
      if (seen.has(b.digest)) continue
      seen.add(b.digest)
      blobs.push({ ...b, present: await present(o, target, repo, b) })
    }
  }
  for (const c of tree.children) blobs.push({ mediaType: c.m.mediaType, digest: c.m.digest, size: c.m.bytes.length, role: 'manifest', present: false })
  const layerMediaTypes = allJson.flatMap((j) => (j.layers ?? []).map((l) => l.mediaType))
  const currentTag = target && tref ? await target.headManifest(repo, tref.reference) : o.to.kind === 'dir' && existsSync(join(o.to.dir, 'index.json')) ? findInIndex(o.to.dir, layoutName(key))?.digest : undefined
  const upToDate = currentTag === tree.top.digest && blobs.filter((b) => b.role !== 'manifest').every((b) => b.present)
  const base: Omit<ArtifactResult, 'copiedBytes' | 'copiedBlobs' | 'skippedBlobs' | 'tagged'> = {
    artifact: key,
    source,
    target: dest,
    manifestDigest: tree.top.digest,
    mediaType: tree.top.mediaType,
    ...(tree.json.artifactType ? { artifactType: tree.json.artifactType } : {}),
    layerMediaTypes,
    ...(tree.json.annotations ? { annotations: tree.json.annotations } : {}),
    blobs,
    upToDate,
  }
  const toCopy = blobs.filter((b) => b.role !== 'manifest' && !b.present)
  const title = (b: Descriptor & { role: string }): string => b.annotations?.['org.opencontainers.image.title'] ?? b.role
  if (o.dryRun) return { ...base, copiedBytes: 0, copiedBlobs: 0, skippedBlobs: blobs.length - toCopy.length, tagged: false }
  for (const b of blobs.filter((x) => x.role !== 'manifest' && x.present)) o.progress?.({ type: 'blob', key, digest: b.digest, size: b.size, title: title(b), action: 'present' })
  if (upToDate) {
    o.progress?.({ type: 'up-to-date', key, target: dest, digest: tree.top.digest })
    return { ...base, copiedBytes: 0, copiedBlobs: 0, skippedBlobs: blobs.filter((b) => b.role !== 'manifest').length, tagged: false }
  }

  // Stage: fetch and verify every missing blob before anything is pushed (a bad one leaves the target as it was).
  const stageRoot = o.to.kind === 'dir' ? join(o.to.dir, '.labctl-staging') : tmpdir()
  mkdirSync(stageRoot, { recursive: true })
  const stage = mkdtempSync(join(stageRoot, 'labctl-mirror-'))
  try {
    for (const b of toCopy) {
      o.progress?.({ type: 'blob', key, digest: b.digest, size: b.size, title: title(b), action: 'download' })
      await reader.blob(key, b, join(stage, b.digest.slice(7)), (done) => o.progress?.({ type: 'bytes', key, digest: b.digest, done, total: b.size, phase: 'download' }))
    }
    let copiedBytes = 0
    for (const b of toCopy) {
      const file = join(stage, b.digest.slice(7))
      if (target) {
        const how = await target.uploadBlob(repo, b, file, {
          ...(o.mountFrom ? { mountFrom: o.mountFrom } : {}),
          progress: (done) => o.progress?.({ type: 'bytes', key, digest: b.digest, done, total: b.size, phase: 'upload' }),
        })
        o.progress?.({ type: 'blob', key, digest: b.digest, size: b.size, title: title(b), action: how === 'mounted' ? 'mounted' : 'upload' })
      } else if (o.to.kind === 'dir') {
        renameSync(file, blobPath(o.to.dir, b.digest))
      }
      copiedBytes += b.size
    }
    // Manifests last: children by digest, then the top one under the tag.
    const manifests = [...tree.children.map((c) => c.m), tree.top]
    for (const m of manifests) {
      if (target && tref) await target.putManifest(repo, m === tree.top ? tref.reference : m.digest, m)
      else if (o.to.kind === 'dir') {
        const tmp = join(stage, `m-${m.digest.slice(7)}`)
        writeFileSync(tmp, m.bytes)
        renameSync(tmp, blobPath(o.to.dir, m.digest))
      }
    }
    if (o.to.kind === 'dir') {
      tagInLayout(o.to.dir, layoutName(key), {
        mediaType: tree.top.mediaType,
        digest: tree.top.digest,
        size: tree.top.bytes.length,
        ...(tree.json.artifactType ? { artifactType: tree.json.artifactType } : {}),
      })
    }
    o.progress?.({ type: 'tagged', key, target: dest, digest: tree.top.digest })
    return { ...base, copiedBytes, copiedBlobs: toCopy.length, skippedBlobs: blobs.filter((b) => b.role !== 'manifest').length - toCopy.length, tagged: true }
  } finally {
    rmSync(stage, { recursive: true, force: true })
    if (o.to.kind === 'dir') rmSync(join(o.to.dir, '.labctl-staging'), { recursive: true, force: true })
  }
}
