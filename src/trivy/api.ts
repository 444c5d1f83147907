import { randomBytes } from 'node:crypto'
import type { Dispatcher } from 'undici'
import { z } from 'zod'
import { oneLine } from '../errors.js'
import { httpRequest, type HttpResult } from '../net/http.js'
import { redactText } from '../redact.js'

/** What `GET /version` answers. VulnerabilityDB is absent when the server has no usable DB. */
export const VersionSchema = z.object({
  Version: z.string(),
  VulnerabilityDB: z
    .object({ Version: z.number(), NextUpdate: z.string().optional(), UpdatedAt: z.string(), DownloadedAt: z.string().optional() })
    .optional(),
})
export type ServerVersion = z.infer<typeof VersionSchema>

/** A non-2xx or non-JSON answer, described the way an operator needs it. */
export class HttpAnswerError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message)
    this.name = 'HttpAnswerError'
  }
}

const bodyText = (res: HttpResult): string => res.body

/** "HAProxy 503 page" rather than "Unexpected token <". */
export function describeAnswer(res: HttpResult, secrets: string[] = []): string {
  const type = String(res.headers['content-type'] ?? '')
  const body = bodyText(res)
  if (res.status === 503 && /<html|no server is available/i.test(body)) return 'backend down: HAProxy answered 503 (no healthy Trivy server behind it)'
  if (res.status >= 300 && res.status < 400) return `HTTP ${res.status} redirect to ${oneLine(redactText(String(res.headers.location ?? '(no Location header)'), secrets), 200)} (labctl does not follow redirects: point the URL at the final address)`
  if (res.status === 502 || res.status === 504) return `backend error: the edge answered ${res.status} (Trivy did not answer HAProxy in time or reset the connection)`
  // Everything taken from the answer (a title, a body) may echo the request: redacted, then shortened.
  const title = /<title>([^<]*)<\/title>/i.exec(body)?.[1]
  const snippet = title ? `HTML page "${oneLine(redactText(title, secrets), 160)}"` : type.includes('html') ? 'an HTML page' : `"${oneLine(redactText(body, secrets), 160)}"`
  return redactText(`HTTP ${res.status} with ${snippet}`, secrets)
}

export function parseJsonAnswer<T>(res: HttpResult, schema: z.ZodType<T>, what: string): T {
  const body = bodyText(res)
  let data: unknown
  try {
    data = JSON.parse(body)
  } catch {
    throw new HttpAnswerError(`expected JSON from ${what}, got ${describeAnswer(res)}`, res.status)
  }
  const parsed = schema.safeParse(data)
  if (!parsed.success) throw new HttpAnswerError(`unexpected JSON from ${what}: ${oneLine(parsed.error.issues[0]?.message ?? 'invalid')}`, res.status)
  return parsed.data
}

export async function getVersion(baseUrl: string, opts: { dispatcher?: Dispatcher; timeoutMs: number }): Promise<ServerVersion> {
  const res = await httpRequest(new URL('/version', baseUrl).toString(), { timeoutMs: opts.timeoutMs, ...(opts.dispatcher ? { dispatcher: opts.dispatcher } : {}) })
  if (res.status !== 200) throw new HttpAnswerError(describeAnswer(res), res.status)
  return parseJsonAnswer(res, VersionSchema, '/version')
}

export async function getHealthz(baseUrl: string, opts: { dispatcher?: Dispatcher; timeoutMs: number }): Promise<HttpResult> {
  return httpRequest(new URL('/healthz', baseUrl).toString(), { timeoutMs: opts.timeoutMs, ...(opts.dispatcher ? { dispatcher: opts.dispatcher } : {}) })
}

/** The canary package: Alpine 3.10's openssl 1.1.1c-r0 has well-known CVEs in every real trivy-db. */
export const CANARY = { os: { family: 'alpine', name: '3.10.2' }, pkg: { name: 'openssl', version: '1.1.1c-r0' } }

export type TwirpOpts = { baseUrl: string; token?: string | undefined; tokenHeader: string; dispatcher?: Dispatcher; timeoutMs: number; signal?: AbortSignal }

/** One Twirp call (JSON) to a Trivy server's API. */
export async function twirp(path: string, body: unknown, o: TwirpOpts): Promise<HttpResult> {
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' }
  if (o.token !== undefined) headers[o.tokenHeader] = o.token
  return httpRequest(new URL(`/twirp/${path}`, o.baseUrl).toString(), {
    method: 'POST',
    headers,
    body: JSON.stringify(body),
    timeoutMs: o.timeoutMs,
    ...(o.dispatcher ? { dispatcher: o.dispatcher } : {}),
  })
}

const ScanSchema = z.object({
  results: z
    .array(z.object({ target: z.string().optional(), vulnerabilities: z.array(z.object({ vulnerability_id: z.string(), pkg_name: z.string(), severity: z.string().optional() })).optional() }))
    .optional(),
})

export type CanaryOutcome =
  | { kind: 'ok'; vulnerabilities: Array<{ id: string; severity: string }> }
  | { kind: 'unauthorized' }
  | { kind: 'error'; status: number; detail: string }

/** Why a canary outcome does not prove a working scanner (no vulnerabilities = an empty or wrong DB), or undefined when it does. */
export function canaryProblem(out: CanaryOutcome): string | undefined {
  if (out.kind === 'unauthorized') return 'token rejected (401)'
  if (out.kind === 'error') return out.detail
  return out.vulnerabilities.length ? undefined : 'no vulnerabilities found (the DB has no Alpine data?)'
}

function outcomeOf(res: HttpResult, token: string | undefined): CanaryOutcome | undefined {
  if (res.status === 401) return { kind: 'unauthorized' }
  if (res.status !== 200) return { kind: 'error', status: res.status, detail: describeAnswer(res, token ? [token] : []) }
  return undefined
}

/**
 * A scan without an image: PutBlob + PutArtifact + Scan of a synthetic Alpine package through Twirp's
 * JSON API, then DeleteBlobs. Proves the token is accepted and that the DB really matches packages.
 */
export async function canaryScan(o: TwirpOpts): Promise<CanaryOutcome> {
  const diffId = `sha256:${randomBytes(32).toString('hex')}`
  const artifactId = `sha256:${randomBytes(32).toString('hex')}`
  const blob = {
    diff_id: diffId,
    blob_info: {
      schema_version: 2,
      os: CANARY.os,
      package_infos: [
        {
          file_path: 'lib/apk/db/installed',
          packages: [{ name: CANARY.pkg.name, version: CANARY.pkg.version, src_name: CANARY.pkg.name, src_version: CANARY.pkg.version }],
        },
      ],
    },
  }
  const put = await twirp('trivy.cache.v1.Cache/PutBlob', blob, o)
  const early = outcomeOf(put, o.token)
  if (early) return early
  try {
    const art = await twirp('trivy.cache.v1.Cache/PutArtifact', { artifact_id: artifactId, artifact_info: { schema_version: 1, os: 'linux', architecture: 'amd64' } }, o)
    const artOut = outcomeOf(art, o.token)
    if (artOut) return artOut
    const scan = await twirp(
      'trivy.scanner.v1.Scanner/Scan',
      { target: 'labctl-canary', artifact_id: artifactId, blob_ids: [diffId], options: { pkg_types: ['os'], scanners: ['vuln'] } },
      o,
    )
    const scanOut = outcomeOf(scan, o.token)
    if (scanOut) return scanOut
    const parsed = parseJsonAnswer(scan, ScanSchema, 'Scan')
    const vulns = (parsed.results ?? []).flatMap((r) => r.vulnerabilities ?? []).filter((v) => v.pkg_name === CANARY.pkg.name)
    return { kind: 'ok', vulnerabilities: vulns.map((v) => ({ id: v.vulnerability_id, severity: v.severity ?? 'UNKNOWN' })) }
  } finally {
    // Leave the server's cache as it was; a failure here is not the canary's verdict.
    await twirp('trivy.cache.v1.Cache/DeleteBlobs', { blob_ids: [diffId] }, o).catch(() => undefined)
  }
}

/** The same Scan call without a token, or with a wrong one: must be 401. Returns the HTTP status. */
export async function unauthenticatedScanStatus(o: TwirpOpts): Promise<{ status: number; detail: string }> {
  const res = await twirp(
    'trivy.scanner.v1.Scanner/Scan',
    { target: 'labctl-auth-probe', artifact_id: `sha256:${'0'.repeat(64)}`, blob_ids: [], options: { pkg_types: ['os'], scanners: ['vuln'] } },
    o,
  )
  return { status: res.status, detail: res.status === 401 ? 'refused (401)' : describeAnswer(res, o.token ? [o.token] : []) }
}
