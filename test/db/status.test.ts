// `trivy db status` against the sandbox: the real Trivy server, its metadata over SSH, and a registry of
// the test's own on loopback as the lab mirror (a fresh aquasec/trivy-db:2 built by labfixtures; the
// sandbox's own registry is on the lab network, HTTPS, and filled once at up). Fresh, stale server behind
// a fresh mirror, and stale mirror are told apart.
import { execa } from 'execa'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { parse, stringify } from 'yaml'
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest'
import { MEDIA } from '../../src/db/ref.js'
import { findTools } from '../../src/sandbox/prereqs.js'
import { labctl, parseJson, ROOT } from '../helpers.js'
import { pushArtifact, rawManifest, startRegistry, type TestRegistry } from './registry-helper.js'

const sb = inject('sandbox')
const tmp = mkdtempSync(join(tmpdir(), 'labctl-dbstatus-'))
let registry: string
let mirror: TestRegistry | undefined
let fresh: string
let staleMirror: string

function inventoryWith(name: string, namespace: string): string {
  const inv = parse(readFileSync(sb.inventory, 'utf8'))
  inv.mirror = { registry, namespace }
  const file = join(tmp, `${name}.yaml`)
  writeFileSync(file, stringify(inv))
  return file
}

const synthetic = async (ns: string, created: string): Promise<void> => {
  await pushArtifact(registry, `${ns}/trivy-java-db`, '1', { configType: MEDIA.trivyConfig, config: Buffer.from('{}'), layerType: MEDIA.javaDbLayer, layer: gzipSync(Buffer.from('not a tar')), title: 'javadb.tar.gz', annotations: { 'org.opencontainers.image.created': created } })
  await pushArtifact(registry, `${ns}/trivy-checks`, '1', { configType: 'application/vnd.cncf.openpolicyagent.config.v1+json', config: Buffer.from('{"c":1}'), layerType: MEDIA.checksLayer, layer: gzipSync(Buffer.from('checks')), title: 'bundle.tar.gz', annotations: { 'org.opencontainers.image.created': created } })
}

type Status = { ok: boolean; hosts: Array<Record<string, any>>; mirror: Array<Record<string, any>> }

beforeAll(async () => {
  mirror = await startRegistry(tmp, 'mirror')
  registry = mirror.addr
  const now = new Date().toISOString()
  const fx = findTools().labfixtures
  const fixtures = ['alpine', 'vulnerability', 'data-source'].map((f) => join(ROOT, 'test/fixtures/db', `${f}.yaml`)).join(',')
  const hoursAgo = (h: number): string => new Date(Date.now() - h * 3_600_000).toISOString().replace(/\.\d+Z$/, 'Z')
  await execa(fx, ['db', '--out', join(tmp, 'new'), '--fixtures', fixtures, '--updated-at', hoursAgo(0), '--next-update', hoursAgo(-6), '--downloaded-at', hoursAgo(0)], { timeout: 60_000 })
  await execa(fx, ['dbpush', '--db', join(tmp, 'new'), '--to', `${registry}/aquasec/trivy-db:2`], { timeout: 60_000 })
  await synthetic('aquasec', now)
  fresh = inventoryWith('fresh', 'aquasec')
  // A stale copy of everything under another namespace.
  await execa(fx, ['db', '--out', join(tmp, 'old'), '--fixtures', fixtures, '--updated-at', '2020-01-01T00:00:00Z', '--next-update', '2020-01-01T12:00:00Z', '--downloaded-at', '2020-01-01T00:05:00Z'], { timeout: 60_000 })
  await execa(fx, ['dbpush', '--db', join(tmp, 'old'), '--to', `${registry}/old/trivy-db:2`], { timeout: 60_000 })
  await synthetic('old', '2020-01-01T00:00:00Z')
  staleMirror = inventoryWith('stale-mirror', 'old')
}, 120_000)

afterAll(async () => {
  await mirror?.stop()
})

afterEach(async () => {
  const r = await labctl(['sandbox', 'heal'], { timeoutMs: 60_000 })
  expect(r.exitCode, r.stderr).toBe(0)
})

describe('trivy db status', () => {
  it('fresh server and mirror: versions, dates, size, repositories, mirror digests and media types; exit 0', async () => {
    const r = await labctl(['trivy', 'db', 'status', '--config', fresh, '--json'])
    expect(r.exitCode, r.stdout + r.stderr).toBe(0)
    const s = parseJson<Status>(r.stdout)
    const h = s.hosts[0]!
    expect(h).toMatchObject({ host: 'trivy-0', verdict: 'fresh', stale: false, skipDbUpdate: true })
    expect(h.server.db.Version).toBe(2)
    expect(h.metadata.UpdatedAt).toBe(h.server.db.UpdatedAt)
    expect(h.dbBytes).toBeGreaterThan(0)
    expect(h.ageHours).toBeLessThan(1)
    const db = s.mirror.find((m) => m.artifact === 'db')!
    const head = await rawManifest(registry, 'aquasec/trivy-db', '2')
    expect(db).toMatchObject({ present: true, layerMediaType: MEDIA.dbLayer, mediaType: MEDIA.ociManifest, builtFrom: 'metadata.json', stale: false })
    expect(db.manifestDigest).toBe(`sha256:${(await import('node:crypto')).createHash('sha256').update(head.bytes).digest('hex')}`)
    expect(s.mirror.find((m) => m.artifact === 'java-db')).toMatchObject({ present: true, layerMediaType: MEDIA.javaDbLayer, builtFrom: 'annotation' })
    expect(s.mirror.find((m) => m.artifact === 'checks')).toMatchObject({ present: true, layerMediaType: MEDIA.checksLayer })
    // the token in the env file is never read back
    expect(r.stdout + r.stderr).not.toMatch(/TRIVY_TOKEN/)
  })

  it('stale server behind a fresh mirror: told apart, exit 3', async () => {
    expect((await labctl(['sandbox', 'break', 'db-stale'], { timeoutMs: 60_000 })).exitCode).toBe(0)
    const r = await labctl(['trivy', 'db', 'status', '--config', fresh])
    expect(r.exitCode, r.stdout + r.stderr).toBe(3)
    expect(r.stdout).toMatch(/trivy-0: STALE-SERVER, age 7\d(\.\d)? h/)
    expect(r.stdout).toMatch(/--skip-db-update/)
    expect(r.stdout).toMatch(/next: the mirror is fresh/)
  })

  it('stale mirror: told apart from a stale server, exit 3', async () => {
    expect((await labctl(['sandbox', 'break', 'db-stale'], { timeoutMs: 60_000 })).exitCode).toBe(0)
    const r = await labctl(['trivy', 'db', 'status', '--config', staleMirror, '--json'])
    expect(r.exitCode, r.stdout + r.stderr).toBe(3)
    const s = parseJson<Status>(r.stdout)
    expect(s.hosts[0]!.verdict).toBe('stale-mirror')
    expect(s.mirror.find((m) => m.artifact === 'db')).toMatchObject({ builtAt: '2020-01-01T00:00:00Z', stale: true })
  })

  it('a fresh server with a stale mirror still exits 3 (the mirror is reported)', async () => {
    const r = await labctl(['trivy', 'db', 'status', '--config', staleMirror])
    expect(r.exitCode, r.stdout + r.stderr).toBe(3)
    expect(r.stdout).toMatch(/trivy-0: FRESH/)
    expect(r.stdout).toMatch(/db\s+127\.0\.0\.1:\d+\/old\/trivy-db:2@sha256:.*STALE/)
  })
})
