// Registry references (`HOST[:PORT]/REPO[:TAG|@sha256:…]`) and the three Trivy artifacts labctl mirrors.
import { isIP } from 'node:net'
import { UsageError } from '../errors.js'

export type ImageRef = { registry: string; repository: string; reference: string }

const REPO_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/
const DIGEST = /^sha256:[a-f0-9]{64}$/
const REGISTRY = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/

/** Parses `registry/repo[:tag|@digest]`; the registry part is required (no Docker Hub guessing). */
export function parseRef(text: string, what = 'reference'): ImageRef {
  const bad = (why: string): never => {
    throw new UsageError(`${what} "${text}": ${why}`, { suggestion: 'write it as REGISTRY[:PORT]/REPOSITORY[:TAG], e.g. ghcr.io/aquasecurity/trivy-db:2' })
  }
  const slash = text.indexOf('/')
  if (slash <= 0) bad('no registry host')
  const registry = text.slice(0, slash)
  if (!REGISTRY.test(registry) || !(registry.includes('.') || registry.includes(':') || registry === 'localhost')) bad('the first part must be a registry host (with a dot or a port)')
  let rest = text.slice(slash + 1)
  let reference = 'latest'
  const at = rest.indexOf('@')
  if (at >= 0) {
    reference = rest.slice(at + 1)
    rest = rest.slice(0, at)
    if (!DIGEST.test(reference)) bad('the digest must be sha256:<64 hex>')
  } else {
    const colon = rest.lastIndexOf(':')
    if (colon >= 0) {
      reference = rest.slice(colon + 1)
      rest = rest.slice(0, colon)
      if (!TAG.test(reference)) bad('not a valid tag')
    }
  }
  if (!rest || !rest.split('/').every((c) => REPO_COMPONENT.test(c))) bad('not a valid repository name (lowercase letters, digits, . _ - separated by /)')
  return { registry, repository: rest, reference }
}

export const formatRef = (r: ImageRef): string => `${r.registry}/${r.repository}${r.reference.startsWith('sha256:') ? '@' : ':'}${r.reference}`

/** Plain HTTP for loopback and private addresses (as Trivy does), HTTPS for everything else unless told. */
export function registryScheme(registry: string, insecure = false): 'http' | 'https' {
  if (insecure) return 'http'
  const host = registry.replace(/:\d+$/, '').replace(/^\[|\]$/g, '')
  if (host === 'localhost') return 'http'
  if (isIP(host) === 4) {
    const [a, b] = host.split('.').map(Number) as [number, number]
    if (a === 127 || a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168)) return 'http'
  }
  if (isIP(host) === 6 && (host === '::1' || /^f[cd]/i.test(host))) return 'http'
  return 'https'
}

export const MEDIA = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  trivyConfig: 'application/vnd.aquasec.trivy.config.v1+json',
  dbLayer: 'application/vnd.aquasec.trivy.db.layer.v1.tar+gzip',
  javaDbLayer: 'application/vnd.aquasec.trivy.javadb.layer.v1.tar+gzip',
  checksLayer: 'application/vnd.cncf.openpolicyagent.layer.v1.tar+gzip',
} as const

export const MANIFEST_TYPES = [MEDIA.ociManifest, MEDIA.ociIndex, MEDIA.dockerManifest, MEDIA.dockerList]
export const isIndex = (mediaType: string): boolean => mediaType === MEDIA.ociIndex || mediaType === MEDIA.dockerList

/** The artifacts of an air-gapped Trivy: the server needs `db`; clients (Jenkins agents) need `java-db` and `checks`. */
export const ARTIFACTS = {
  db: { name: 'trivy-db', tag: '2', source: 'ghcr.io/aquasecurity/trivy-db:2', layerType: MEDIA.dbLayer, title: 'db.tar.gz', flag: '--db-repository' },
  'java-db': { name: 'trivy-java-db', tag: '1', source: 'ghcr.io/aquasecurity/trivy-java-db:1', layerType: MEDIA.javaDbLayer, title: 'javadb.tar.gz', flag: '--java-db-repository' },
  checks: { name: 'trivy-checks', tag: '1', source: 'ghcr.io/aquasecurity/trivy-checks:1', layerType: MEDIA.checksLayer, title: 'bundle.tar.gz', flag: '--checks-bundle-repository' },
} as const
export type ArtifactKey = keyof typeof ARTIFACTS
export const ARTIFACT_KEYS = Object.keys(ARTIFACTS) as ArtifactKey[]

/** Where an artifact lives in the lab mirror: REGISTRY/NAMESPACE/NAME:TAG. */
export function mirrorRef(m: { registry: string; namespace: string }, key: ArtifactKey): ImageRef {
  const a = ARTIFACTS[key]
  return { registry: m.registry, repository: m.namespace ? `${m.namespace}/${a.name}` : a.name, reference: a.tag }
}
