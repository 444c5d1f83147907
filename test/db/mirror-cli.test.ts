// The built binary: `labctl trivy db mirror` with an inventory's mirror: section, plain progress lines on a
// non-terminal stderr, a second run that copies nothing, --to-dir without any inventory, usage errors.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { stringify } from 'yaml'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MEDIA } from '../../src/db/ref.js'
import { labctl, parseJson } from '../helpers.js'
import { pushArtifact, rawManifest, startRegistry, type TestRegistry } from './registry-helper.js'

let dir: string
let up: TestRegistry
let lab: TestRegistry
let inv: string
let env: NodeJS.ProcessEnv
let layer: Buffer

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'labctl-mirror-cli-'))
  ;[up, lab] = await Promise.all([startRegistry(dir, 'upstream'), startRegistry(dir, 'lab')])
  layer = gzipSync(Buffer.from('java db bytes '.repeat(1000)))
  await pushArtifact(up.addr, 'aquasecurity/trivy-java-db', '1', { configType: MEDIA.trivyConfig, config: Buffer.from('{}'), layerType: MEDIA.javaDbLayer, layer, title: 'javadb.tar.gz', artifactType: MEDIA.trivyConfig })
  inv = join(dir, 'lab.yaml')
  writeFileSync(
    inv,
    stringify({
      name: 'mirrorlab',
      dns: { servers: ['127.0.0.1'] },
      trivy: { version: '0.74.0', publicUrl: 'https://trivy.example.test', hosts: [{ name: 'trivy-0', fqdn: 'trivy-0.example.test' }] },
      mirror: { registry: lab.addr, namespace: 'lab', sources: { javaDb: `${up.addr}/aquasecurity/trivy-java-db:1` }, timeoutMs: 5000 },
    }),
  )
  writeFileSync(join(dir, 'auth.json'), '{"auths":{}}')
  env = { XDG_CONFIG_HOME: join(dir, 'xdg'), REGISTRY_AUTH_FILE: join(dir, 'auth.json'), LABCTL_CONFIG: '' }
}, 60_000)

afterAll(async () => {
  await Promise.all([up?.stop(), lab?.stop()])
  if (dir) rmSync(dir, { recursive: true, force: true })
})

describe('labctl trivy db mirror (binary)', () => {
  it('copies with plain progress lines on stderr, a summary on stdout; the second run copies nothing', async () => {
    const r = await labctl(['trivy', 'db', 'mirror', '--config', inv, '--only', 'java-db'], { env })
    expect(r.exitCode, r.stderr).toBe(0)
    expect(r.stderr).toMatch(/java-db: 127\.0\.0\.1:\d+\/aquasecurity\/trivy-java-db:1 → 127\.0\.0\.1:\d+\/lab\/trivy-java-db:1/)
    expect(r.stderr).toMatch(/pushed\s+sha256:[0-9a-f]{12} javadb\.tar\.gz/)
    expect(r.stderr).not.toMatch(/\r|\x1b\[/)
    expect(r.stdout).toMatch(/java-db\s+copied\s+127\.0\.0\.1:\d+\/lab\/trivy-java-db:1@sha256:[0-9a-f]{64} \(2 blobs/)
    expect((await rawManifest(lab.addr, 'lab/trivy-java-db', '1')).status).toBe(200)
    const again = await labctl(['trivy', 'db', 'mirror', '--config', inv, '--only', 'java-db', '--json'], { env })
    expect(again.exitCode, again.stderr).toBe(0)
    const j = parseJson<{ artifacts: Array<{ upToDate: boolean; copiedBlobs: number; layerMediaTypes: string[] }> }>(again.stdout)
    expect(j.artifacts[0]).toMatchObject({ upToDate: true, copiedBlobs: 0, layerMediaTypes: [MEDIA.javaDbLayer] })
  })

  it('--dry-run lists blobs and changes nothing', async () => {
    const r = await labctl(['trivy', 'db', 'mirror', '--config', inv, '--only', 'java-db', '--java-db-source', `${up.addr}/aquasecurity/trivy-java-db:1`, '--dry-run'], { env })
    expect(r.exitCode, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/present\s+layer\s+sha256:[0-9a-f]{12} application\/vnd\.aquasec\.trivy\.javadb\.layer\.v1\.tar\+gzip/)
  })

  it('--to-dir works with no inventory at all (the connected side of a sneakernet)', async () => {
    const out = join(dir, 'usb')
    const r = await labctl(['trivy', 'db', 'mirror', '--to-dir', out, '--only', 'java-db', '--java-db-source', `${up.addr}/aquasecurity/trivy-java-db:1`], { env })
    expect(r.exitCode, r.stderr).toBe(0)
    const idx = JSON.parse(readFileSync(join(out, 'index.json'), 'utf8')) as { manifests: Array<{ annotations: Record<string, string>; artifactType?: string }> }
    expect(idx.manifests[0]).toMatchObject({ annotations: { 'org.opencontainers.image.ref.name': 'trivy-java-db:1' }, artifactType: MEDIA.trivyConfig })
  })

  it('usage errors: no mirror: section, unknown artifact, a bad source reference — exit 2 with next:', async () => {
    const bare = join(dir, 'bare.yaml')
    writeFileSync(bare, readFileSync(inv, 'utf8').replace(/^mirror:[\s\S]*$/m, ''))
    const cases: Array<[string[], RegExp]> = [
      [['--config', bare], /no mirror: section/],
      [['--config', inv, '--only', 'vexhub'], /unknown artifact "vexhub"/],
      [['--config', inv, '--only', 'db', '--db-source', 'trivy-db'], /no registry host/],
    ]
    for (const [args, re] of cases) {
      const r = await labctl(['trivy', 'db', 'mirror', ...args], { env })
      expect(r.exitCode, r.stderr).toBe(2)
      expect(r.stderr).toMatch(re)
      expect(r.stderr).toMatch(/next: /)
    }
  })
})
