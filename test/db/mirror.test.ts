// `trivy db mirror` against two real docker-registry processes on loopback: an "upstream" seeded with a
// trivy-db built by labfixtures and synthetic java-db / checks artifacts with the real media types, and
// the lab registry. Byte-for-byte copy, a second run that copies nothing, the OCI-layout sneakernet, and a
// tampered blob that is refused with nothing tagged.
import { execa } from 'execa'
import { createHash } from 'node:crypto'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadAuth } from '../../src/db/auth.js'
import { mirror, type MirrorEvent, type MirrorOptions } from '../../src/db/mirror.js'
import { MEDIA, type ArtifactKey } from '../../src/db/ref.js'
import { findTools } from '../../src/sandbox/prereqs.js'
import { freePorts, waitFor } from '../../src/sandbox/proc.js'
import { canaryScan } from '../../src/trivy/api.js'
import { blobFile, pushArtifact, rawManifest, startRegistry, type TestRegistry } from './registry-helper.js'
import { ROOT } from '../helpers.js'
import { startAuthProxy } from './auth-proxy.js'
import { progressRenderer } from '../../src/db/progress.js'

let dir: string
let up: TestRegistry
let lab: TestRegistry
const pushed: Partial<Record<ArtifactKey, { digest: string; bytes: Buffer; layerDigest: string }>> = {}
const REPOS: Record<ArtifactKey, string> = { db: 'aquasecurity/trivy-db', 'java-db': 'aquasecurity/trivy-java-db', checks: 'aquasecurity/trivy-checks' }
const TAGS: Record<ArtifactKey, string> = { db: '2', 'java-db': '1', checks: '1' }

const opts = (over: Partial<MirrorOptions> = {}): MirrorOptions => ({
  artifacts: ['db', 'java-db', 'checks'],
  sources: { db: `${up.addr}/${REPOS.db}:2`, 'java-db': `${up.addr}/${REPOS['java-db']}:1`, checks: `${up.addr}/${REPOS.checks}:1` },
  from: { kind: 'registry' },
  to: { kind: 'registry', registry: lab.addr, namespace: 'aquasec' },
  dryRun: false,
  timeoutMs: 10_000,
  auth: loadAuth({ REGISTRY_AUTH_FILE: join(dir, 'no-auth.json') }),
  ...over,
})

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'labctl-mirror-'))
  writeFileSync(join(dir, 'no-auth.json'), '{"auths":{}}')
  ;[up, lab] = await Promise.all([startRegistry(dir, 'upstream'), startRegistry(dir, 'lab')])
  const fx = findTools().labfixtures
  const fixtures = ['alpine', 'vulnerability', 'data-source'].map((f) => join(ROOT, 'test/fixtures/db', `${f}.yaml`)).join(',')
  await execa(fx, ['db', '--out', join(dir, 'db'), '--fixtures', fixtures], { timeout: 60_000 })
  const out = await execa(fx, ['dbpush', '--db', join(dir, 'db'), '--to', `${up.addr}/${REPOS.db}:2`], { timeout: 60_000 })
  const m = /@(sha256:[a-f0-9]{64}) \(db\.tar\.gz \d+ bytes, (sha256:[a-f0-9]{64})\)/.exec(out.stdout)
  expect(m, out.stdout).toBeTruthy()
  const dbm = await rawManifest(up.addr, REPOS.db, '2')
  pushed.db = { digest: m![1]!, bytes: dbm.bytes, layerDigest: m![2]! }
  // A javadb.tar.gz the real Trivy client accepts: a bbolt file named trivy-java.db + metadata.json (Version 1).
  mkdirSync(join(dir, 'java'))
  copyFileSync(join(dir, 'db', 'trivy.db'), join(dir, 'java', 'trivy-java.db'))
  const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z')
  writeFileSync(join(dir, 'java', 'metadata.json'), JSON.stringify({ Version: 1, NextUpdate: now, UpdatedAt: now, DownloadedAt: now }))
  await execa('tar', ['-czf', join(dir, 'javadb.tar.gz'), '-C', join(dir, 'java'), 'trivy-java.db', 'metadata.json'])
  pushed['java-db'] = await pushArtifact(up.addr, REPOS['java-db'], '1', {
    configType: MEDIA.trivyConfig,
    config: Buffer.from('{}'),
    layerType: MEDIA.javaDbLayer,
    layer: readFileSync(join(dir, 'javadb.tar.gz')),
    title: 'javadb.tar.gz',
    artifactType: MEDIA.trivyConfig,
    annotations: { 'org.opencontainers.image.created': '2026-11-30T06:00:00Z' },
  })
  pushed.checks = await pushArtifact(up.addr, REPOS.checks, '1', {
    configType: 'application/vnd.cncf.openpolicyagent.config.v1+json',
    config: Buffer.from('{"labctl":"checks config"}'),
    layerType: MEDIA.checksLayer,
    layer: gzipSync(Buffer.from('synthetic checks bundle')),
    title: 'bundle.tar.gz',
    annotations: { 'org.opencontainers.image.created': '2026-11-30T07:00:00Z', 'dev.labctl.test': 'kept' },
  })
}, 120_000)

afterAll(async () => {
  await Promise.all([up?.stop(), lab?.stop()])
  if (dir) rmSync(dir, { recursive: true, force: true })
})

describe('trivy db mirror', () => {
  it('--dry-run lists every blob to copy and changes nothing', async () => {
    const r = await mirror(opts({ dryRun: true }))
    expect(r.artifacts.map((a) => a.artifact)).toEqual(['db', 'java-db', 'checks'])
    for (const a of r.artifacts) {
      expect(a.blobs.filter((b) => b.role !== 'manifest').every((b) => !b.present)).toBe(true)
      expect(a.tagged).toBe(false)
    }
    expect((await rawManifest(lab.addr, 'aquasec/trivy-db', '2')).status).toBe(404)
  })

  it('copies manifests, configs and layers byte for byte, media types, annotations and artifactType kept', async () => {
    const events: MirrorEvent[] = []
    const r = await mirror(opts({ progress: (e) => events.push(e) }))
    expect(r.artifacts.every((a) => a.tagged && a.copiedBlobs === 2)).toBe(true)
    for (const key of ['db', 'java-db', 'checks'] as const) {
      const src = await rawManifest(up.addr, REPOS[key], TAGS[key])
      const dst = await rawManifest(lab.addr, `aquasec/${REPOS[key].split('/')[1]}`, TAGS[key])
      expect(dst.status).toBe(200)
      expect(dst.bytes.equals(src.bytes)).toBe(true)
      expect(dst.bytes.equals(pushed[key]!.bytes)).toBe(true)
      expect(dst.type).toBe(src.type)
      const j = JSON.parse(dst.bytes.toString()) as { layers: Array<{ mediaType: string; digest: string }> }
      // the layer's bytes at the lab registry are the upstream's
      const a = await fetch(`http://${up.addr}/v2/${REPOS[key]}/blobs/${j.layers[0]!.digest}`).then((x) => x.arrayBuffer())
      const b = await fetch(`http://${lab.addr}/v2/aquasec/${REPOS[key].split('/')[1]}/blobs/${j.layers[0]!.digest}`).then((x) => x.arrayBuffer())
      expect(Buffer.from(b).equals(Buffer.from(a))).toBe(true)
    }
    const db = r.artifacts.find((a) => a.artifact === 'db')!
    expect(db.layerMediaTypes).toEqual([MEDIA.dbLayer])
    expect(db.artifactType).toBe(MEDIA.trivyConfig)
    expect(db.manifestDigest).toBe(pushed.db!.digest)
    expect(r.artifacts.find((a) => a.artifact === 'java-db')!.layerMediaTypes).toEqual([MEDIA.javaDbLayer])
    expect(r.artifacts.find((a) => a.artifact === 'checks')!.annotations?.['dev.labctl.test']).toBe('kept')
    expect(events.filter((e) => e.type === 'blob' && e.action === 'upload')).toHaveLength(6)
    expect(events.filter((e) => e.type === 'tagged')).toHaveLength(3)
  })

  it('a second run skips every blob and pushes nothing', async () => {
    const events: MirrorEvent[] = []
    const r = await mirror(opts({ progress: (e) => events.push(e) }))
    expect(r.artifacts.every((a) => a.upToDate && a.copiedBlobs === 0 && a.skippedBlobs === 2 && !a.tagged)).toBe(true)
    expect(events.some((e) => e.type === 'bytes' || (e.type === 'blob' && e.action !== 'present'))).toBe(false)
    expect(events.filter((e) => e.type === 'blob' && e.action === 'present')).toHaveLength(6)
  })

  it('--mount-from: blobs already in another repository of the lab registry are mounted, not uploaded', async () => {
    const events: MirrorEvent[] = []
    const r = await mirror(opts({ artifacts: ['java-db'], to: { kind: 'registry', registry: lab.addr, namespace: 'mounted' }, mountFrom: 'aquasec/trivy-java-db', progress: (e) => events.push(e) }))
    expect(r.artifacts[0]!.tagged).toBe(true)
    expect(events.filter((e) => e.type === 'blob').map((e) => (e as { action: string }).action)).toEqual(['download', 'download', 'mounted', 'mounted'])
    expect((await rawManifest(lab.addr, 'mounted/trivy-java-db', '1')).bytes.equals(pushed['java-db']!.bytes)).toBe(true)
  })

  it('the real Trivy client downloads the mirrored trivy-db and java-db from the lab registry', async () => {
    const trivy = findTools().trivy
    const cache = join(dir, 'trivy-cache')
    const quiet = ['--cache-dir', cache, '--skip-version-check', '--disable-telemetry', '--quiet']
    await execa(trivy, ['image', '--download-db-only', '--db-repository', `${lab.addr}/aquasec/trivy-db:2`, ...quiet], { timeout: 60_000 })
    expect(readFileSync(join(cache, 'db', 'trivy.db')).equals(readFileSync(join(dir, 'db', 'trivy.db')))).toBe(true)
    await execa(trivy, ['image', '--download-java-db-only', '--java-db-repository', `${lab.addr}/aquasec/trivy-java-db:1`, ...quiet], { timeout: 60_000 })
    expect(readFileSync(join(cache, 'java-db', 'trivy-java.db')).equals(readFileSync(join(dir, 'java', 'trivy-java.db')))).toBe(true)
  })

  it('a real `trivy server --db-repository <mirror>` with an empty cache downloads the copy and the canary finds its CVEs', async () => {
    const [port] = (await freePorts(1)) as [number]
    const cache = join(dir, 'server-cache')
    const server = execa(findTools().trivy, ['server', '--listen', `127.0.0.1:${port}`, '--cache-dir', cache, '--db-repository', `${lab.addr}/aquasec/trivy-db:2`], {
      env: { TRIVY_TOKEN: 'mirror-test-token' },
      reject: false,
      stdio: 'ignore',
    })
    try {
      const base = `http://127.0.0.1:${port}`
      expect(await waitFor(() => fetch(`${base}/healthz`).then((r) => r.ok), 30_000)).toBe(true)
      const out = await canaryScan({ baseUrl: base, token: 'mirror-test-token', tokenHeader: 'Trivy-Token', timeoutMs: 10_000 })
      expect(out.kind).toBe('ok')
      expect(out.kind === 'ok' && out.vulnerabilities.map((v) => v.id).sort()).toEqual(['CVE-2019-1549', 'CVE-2020-1967'])
    } finally {
      server.kill('SIGTERM')
      await server
    }
  })

  it('--to-dir writes an OCI layout and --from-dir pushes it (sneakernet), identical bytes', async () => {
    const layout = join(dir, 'usb')
    const w = await mirror(opts({ to: { kind: 'dir', dir: layout } }))
    expect(w.artifacts.every((a) => a.tagged)).toBe(true)
    expect(JSON.parse(readFileSync(join(layout, 'oci-layout'), 'utf8'))).toEqual({ imageLayoutVersion: '1.0.0' })
    const idx = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; annotations: Record<string, string> }> }
    expect(idx.manifests.map((m) => m.annotations['org.opencontainers.image.ref.name']).sort()).toEqual(['trivy-checks:1', 'trivy-db:2', 'trivy-java-db:1'])
    expect(readFileSync(join(layout, 'blobs/sha256', pushed['java-db']!.digest.slice(7))).equals(pushed['java-db']!.bytes)).toBe(true)
    expect(existsSync(join(layout, '.labctl-staging'))).toBe(false)
    // again: nothing to write
    const again = await mirror(opts({ to: { kind: 'dir', dir: layout } }))
    expect(again.artifacts.every((a) => a.upToDate)).toBe(true)

    const p = await mirror(opts({ from: { kind: 'dir', dir: layout }, to: { kind: 'registry', registry: lab.addr, namespace: 'airgap' } }))
    expect(p.artifacts.every((a) => a.tagged)).toBe(true)
    for (const key of ['db', 'java-db', 'checks'] as const) {
      const dst = await rawManifest(lab.addr, `airgap/${REPOS[key].split('/')[1]}`, TAGS[key])
      expect(dst.bytes.equals(pushed[key]!.bytes)).toBe(true)
    }
  })

  it('a tampered layout blob is refused by digest, nothing tagged', async () => {
    const layout = join(dir, 'usb')
    const f = join(layout, 'blobs/sha256', pushed.checks!.layerDigest.slice(7))
    const orig = readFileSync(f)
    const bad = Buffer.from(orig)
    bad[bad.length - 1] = bad[bad.length - 1]! ^ 0xff
    writeFileSync(f, bad)
    try {
      await expect(mirror(opts({ artifacts: ['checks'], from: { kind: 'dir', dir: layout }, to: { kind: 'registry', registry: lab.addr, namespace: 'tampered-dir' } }))).rejects.toThrow(/digest mismatch.*nothing was tagged/)
      expect((await rawManifest(lab.addr, 'tampered-dir/trivy-checks', '1')).status).toBe(404)
    } finally {
      writeFileSync(f, orig)
    }
  })

  it('a tampered blob in the source registry is refused by digest: clear error, nothing tagged, nothing pushed', async () => {
    const f = blobFile(up.storage, pushed['java-db']!.layerDigest)
    const orig = readFileSync(f)
    const bad = Buffer.from(orig)
    bad[10] = bad[10]! ^ 0xff
    writeFileSync(f, bad)
    try {
      const err = await mirror(opts({ artifacts: ['java-db'], to: { kind: 'registry', registry: lab.addr, namespace: 'tampered' } })).then(
        () => undefined,
        (e: unknown) => e as Error & { code?: string; suggestion?: string },
      )
      expect(err?.code).toBe('DIGEST_MISMATCH')
      expect(err?.message).toContain(pushed['java-db']!.layerDigest)
      expect(err?.suggestion).toBeTruthy()
      expect((await rawManifest(lab.addr, 'tampered/trivy-java-db', '1')).status).toBe(404)
      const head = await fetch(`http://${lab.addr}/v2/tampered/trivy-java-db/blobs/${pushed['java-db']!.layerDigest}`, { method: 'HEAD' })
      expect(head.status).toBe(404)
    } finally {
      writeFileSync(f, orig)
    }
  })

  it('a layout whose manifest names a non-sha256 digest is refused before any file or URL is built from it', async () => {
    const bad = join(dir, 'evil')
    mkdirSync(join(bad, 'blobs/sha256'), { recursive: true })
    writeFileSync(join(bad, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}')
    const m = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA.ociManifest, config: { mediaType: MEDIA.trivyConfig, digest: 'sha256:../../../../etc/passwd', size: 2 }, layers: [] }))
    const d = createHash('sha256').update(m).digest('hex')
    writeFileSync(join(bad, 'blobs/sha256', d), m)
    writeFileSync(join(bad, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: MEDIA.ociManifest, digest: `sha256:${d}`, size: m.length, annotations: { 'org.opencontainers.image.ref.name': 'trivy-db:2' } }] }))
    await expect(mirror(opts({ artifacts: ['db'], from: { kind: 'dir', dir: bad }, to: { kind: 'registry', registry: lab.addr, namespace: 'evil' } }))).rejects.toThrow(/malformed descriptor/)
    expect((await rawManifest(lab.addr, 'evil/trivy-db', '2')).status).toBe(404)
  })

  it('a source that is not there is one clear error', async () => {
    await expect(mirror(opts({ artifacts: ['db'], sources: { ...opts().sources, db: `${up.addr}/nope/trivy-db:2` } }))).rejects.toThrow(/HTTP 404/)
  })

  describe('registry credentials (REGISTRY_AUTH_FILE, never printed)', () => {
    const PASSWORD = 'pw-Zq81-secret'
    const authFile = (registry: string, password = PASSWORD): string => {
      const f = join(dir, `auth-${Math.random().toString(36).slice(2)}.json`)
      writeFileSync(f, JSON.stringify({ auths: { [registry]: { auth: Buffer.from(`labuser:${password}`).toString('base64') } } }), { mode: 0o600 })
      return f
    }

    it('bearer token flow: 401 challenge → token endpoint with basic credentials → push with the token', async () => {
      const proxy = await startAuthProxy(lab.addr, 'bearer', 'labuser', PASSWORD)
      try {
        const r = await mirror(opts({ artifacts: ['checks'], to: { kind: 'registry', registry: proxy.addr, namespace: 'authed' }, auth: loadAuth({ REGISTRY_AUTH_FILE: authFile(proxy.addr) }) }))
        expect(r.artifacts[0]!.tagged).toBe(true)
        expect((await rawManifest(lab.addr, 'authed/trivy-checks', '1')).bytes.equals(pushed.checks!.bytes)).toBe(true)
        expect(proxy.tokenRequests.length).toBeGreaterThan(0)
        expect(proxy.tokenRequests.every((t) => t.authorization === `Basic ${Buffer.from(`labuser:${PASSWORD}`).toString('base64')}` && t.service === 'labtest')).toBe(true)
        expect(proxy.tokenRequests.map((t) => t.scope)).toContain('repository:authed/trivy-checks:pull,push')
      } finally {
        await proxy.close()
      }
    })

    it('basic auth challenge works too', async () => {
      const proxy = await startAuthProxy(lab.addr, 'basic', 'labuser', PASSWORD)
      try {
        const r = await mirror(opts({ artifacts: ['java-db'], to: { kind: 'registry', registry: proxy.addr, namespace: 'basic' }, auth: loadAuth({ REGISTRY_AUTH_FILE: authFile(proxy.addr) }) }))
        expect(r.artifacts[0]!.tagged).toBe(true)
        expect((await rawManifest(lab.addr, 'basic/trivy-java-db', '1')).status).toBe(200)
      } finally {
        await proxy.close()
      }
    })

    it('no or wrong credentials: one clear error pointing at the auth file, the password never in it', async () => {
      const proxy = await startAuthProxy(lab.addr, 'bearer', 'labuser', PASSWORD)
      try {
        const none = await mirror(opts({ artifacts: ['checks'], to: { kind: 'registry', registry: proxy.addr, namespace: 'x' } })).catch((e: Error & { suggestion?: string; code?: string }) => e)
        expect((none as { code?: string }).code).toBe('REGISTRY_AUTH')
        expect((none as { suggestion?: string }).suggestion).toMatch(/REGISTRY_AUTH_FILE/)
        const wrongFile = authFile(proxy.addr, 'wrong-pass-77')
        const wrong = await mirror(opts({ artifacts: ['checks'], to: { kind: 'registry', registry: proxy.addr, namespace: 'x' }, auth: loadAuth({ REGISTRY_AUTH_FILE: wrongFile }) })).catch((e: Error & { suggestion?: string }) => e)
        const text = `${(wrong as Error).message} ${(wrong as { suggestion?: string }).suggestion}`
        expect(text).toMatch(/not authorized/)
        expect(text).toContain(wrongFile)
        expect(text).not.toContain('wrong-pass-77')
        expect(text).not.toContain(Buffer.from('labuser:wrong-pass-77').toString('base64'))
      } finally {
        await proxy.close()
      }
    })
  })

  it('progress: plain lines without a terminal, a redrawn bar on one', () => {
    const plain: string[] = []
    const p = progressRenderer((s) => plain.push(s), false)
    p.on({ type: 'blob', key: 'db', digest: `sha256:${'a'.repeat(64)}`, size: 2048, title: 'db.tar.gz', action: 'download' })
    p.on({ type: 'bytes', key: 'db', digest: `sha256:${'a'.repeat(64)}`, done: 1024, total: 2048, phase: 'download' })
    p.on({ type: 'tagged', key: 'db', target: 'r/aquasec/trivy-db:2', digest: `sha256:${'b'.repeat(64)}` })
    expect(plain.join('')).not.toMatch(/\r|\x1b/)
    expect(plain).toHaveLength(2)
    const tty: string[] = []
    const t = progressRenderer((s) => tty.push(s), true, () => 1_000_000)
    t.on({ type: 'bytes', key: 'db', digest: `sha256:${'a'.repeat(64)}`, done: 1024, total: 2048, phase: 'download' })
    t.end()
    expect(tty.join('')).toMatch(/\r\x1b\[K  fetch \[#{15}-{15}\]  50% 1\.0 KiB\/2\.0 KiB/)
  })
})
