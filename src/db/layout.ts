// OCI image layout on disk (oci-layout, index.json, blobs/sha256/…): the sneakernet form of the mirror.
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { LabctlError, UsageError } from '../errors.js'
import { readBounded } from '../fs/read-bounded.js'
import { MEDIA } from './ref.js'
import type { Descriptor } from './registry.js'

export const REF_NAME = 'org.opencontainers.image.ref.name'
export type LayoutIndex = { schemaVersion: 2; mediaType?: string; manifests: Descriptor[] }

export const blobPath = (dir: string, digest: string): string => {
  if (!/^sha256:[a-f0-9]{64}$/.test(digest)) throw new LabctlError(`not a sha256 digest: ${digest}`, { code: 'BAD_DIGEST', suggestion: 'the manifest is malformed' })
  return join(dir, 'blobs', 'sha256', digest.slice(7))
}

export function readIndex(dir: string): LayoutIndex {
  const file = join(dir, 'index.json')
  if (!existsSync(join(dir, 'oci-layout')) || !existsSync(file)) {
    throw new UsageError(`${dir} is not an OCI image layout (no oci-layout / index.json)`, { suggestion: 'pass the directory written by `labctl trivy db mirror --to-dir`' })
  }
  const text = readBounded(file, 'oci-index').toString('utf8')
  try {
    const j = JSON.parse(text) as LayoutIndex
    if (!Array.isArray(j.manifests)) throw new Error('no manifests')
    return j
  } catch {
    throw new UsageError(`${file} is not a valid OCI index`, { suggestion: 'write the layout again with `labctl trivy db mirror --to-dir`' })
  }
}

/** The index entry tagged `name` (e.g. trivy-db:2). */
export function findInIndex(dir: string, name: string): Descriptor | undefined {
  return readIndex(dir).manifests.find((m) => m.annotations?.[REF_NAME] === name)
}

export function initLayout(dir: string): void {
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true })
  if (!existsSync(join(dir, 'oci-layout'))) writeFileSync(join(dir, 'oci-layout'), `${JSON.stringify({ imageLayoutVersion: '1.0.0' })}\n`)
  if (!existsSync(join(dir, 'index.json'))) atomicWrite(join(dir, 'index.json'), `${JSON.stringify({ schemaVersion: 2, mediaType: MEDIA.ociIndex, manifests: [] })}\n`)
}

/** Adds or replaces the entry named `name`; index.json is replaced atomically. */
export function tagInLayout(dir: string, name: string, d: Descriptor): void {
  const idx = readIndex(dir)
  idx.manifests = idx.manifests.filter((m) => m.annotations?.[REF_NAME] !== name)
  idx.manifests.push({ ...d, annotations: { ...d.annotations, [REF_NAME]: name } })
  atomicWrite(join(dir, 'index.json'), `${JSON.stringify(idx, null, 2)}\n`)
}

function atomicWrite(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}`
  try {
    writeFileSync(tmp, text)
    renameSync(tmp, file)
  } catch (err) {
    rmSync(tmp, { force: true })
    throw new LabctlError(`cannot write ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { code: 'LOCAL_WRITE', suggestion: 'check the directory (permissions, free space)' })
  }
}
