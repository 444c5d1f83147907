// Test helpers: a real Debian docker-registry on a free loopback port with its own storage, and a tiny
// independent pusher (plain undici, not labctl's client) for synthetic artifacts with Trivy's media types.
import { createHash } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { request } from 'undici'
import { stringify } from 'yaml'
import { freePorts, spawnDaemon, stopProcess, waitFor } from '../../src/sandbox/proc.js'

export type TestRegistry = { addr: string; port: number; storage: string; pid: number; stop: () => Promise<void> }

export async function startRegistry(dir: string, name: string): Promise<TestRegistry> {
  const [port] = (await freePorts(1)) as [number]
  const storage = join(dir, `${name}-data`)
  mkdirSync(storage, { recursive: true })
  const cfg = join(dir, `${name}.yaml`)
  writeFileSync(cfg, stringify({ version: 0.1, log: { level: 'warn' }, storage: { filesystem: { rootdirectory: storage }, delete: { enabled: true } }, http: { addr: `127.0.0.1:${port}` } }))
  const pid = spawnDaemon('docker-registry', ['serve', cfg], { log: join(dir, `${name}.log`) })
  const up = await waitFor(async () => (await request(`http://127.0.0.1:${port}/v2/`, { headersTimeout: 1000, bodyTimeout: 1000 }).then(async (r) => (await r.body.dump(), r.statusCode === 200))), 15_000)
  if (!up) throw new Error(`registry ${name} did not start (see ${dir}/${name}.log)`)
  return { addr: `127.0.0.1:${port}`, port, storage, pid, stop: () => stopProcess(pid) }
}

export const digestOf = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`

/** The registry's own file for a blob (filesystem driver layout). */
export const blobFile = (storage: string, digest: string): string => join(storage, 'docker/registry/v2/blobs/sha256', digest.slice(7, 9), digest.slice(7), 'data')

async function pushBlob(addr: string, repo: string, data: Buffer): Promise<string> {
  const digest = digestOf(data)
  const start = await request(`http://${addr}/v2/${repo}/blobs/uploads/`, { method: 'POST', headersTimeout: 5000, bodyTimeout: 5000 })
  await start.body.dump()
  if (start.statusCode !== 202) throw new Error(`POST upload: ${start.statusCode}`)
  const url = new URL(String(start.headers.location), `http://${addr}`)
  url.searchParams.set('digest', digest)
  const put = await request(url, { method: 'PUT', body: data, headers: { 'content-type': 'application/octet-stream' }, headersTimeout: 5000, bodyTimeout: 5000 })
  await put.body.dump()
  if (put.statusCode !== 201) throw new Error(`PUT blob: ${put.statusCode}`)
  return digest
}

/** Pushes config + one layer + a manifest written with an odd indentation (so byte-exactness is visible). */
export async function pushArtifact(
  addr: string,
  repo: string,
  tag: string,
  a: { configType: string; config: Buffer; layerType: string; layer: Buffer; title: string; artifactType?: string; annotations?: Record<string, string> },
): Promise<{ digest: string; bytes: Buffer; layerDigest: string }> {
  const cfg = await pushBlob(addr, repo, a.config)
  const layerDigest = await pushBlob(addr, repo, a.layer)
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    ...(a.artifactType ? { artifactType: a.artifactType } : {}),
    config: { mediaType: a.configType, digest: cfg, size: a.config.length },
    layers: [{ mediaType: a.layerType, digest: layerDigest, size: a.layer.length, annotations: { 'org.opencontainers.image.title': a.title } }],
    ...(a.annotations ? { annotations: a.annotations } : {}),
  }
  const bytes = Buffer.from(`${JSON.stringify(manifest, null, 3)}\n`)
  const res = await request(`http://${addr}/v2/${repo}/manifests/${tag}`, {
    method: 'PUT',
    body: bytes,
    headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
    headersTimeout: 5000,
    bodyTimeout: 5000,
  })
  const text = await res.body.text()
  if (res.statusCode !== 201) throw new Error(`PUT manifest: ${res.statusCode} ${text}`)
  return { digest: digestOf(bytes), bytes, layerDigest }
}

/** GET a manifest with plain undici: exact bytes and Content-Type. */
export async function rawManifest(addr: string, repo: string, ref: string): Promise<{ status: number; bytes: Buffer; type: string }> {
  const res = await request(`http://${addr}/v2/${repo}/manifests/${ref}`, {
    headers: { accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json' },
    headersTimeout: 5000,
    bodyTimeout: 5000,
  })
  const bytes = Buffer.from(await res.body.arrayBuffer())
  return { status: res.statusCode, bytes, type: String(res.headers['content-type'] ?? '') }
}
