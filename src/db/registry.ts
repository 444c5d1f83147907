// A small OCI distribution client over undici: manifests (exact bytes and media type), blobs (verified by
// sha256 while streamed to a file), HEAD for presence, monolithic uploads, optional cross-repo mount, and
// the token flow of the distribution spec (401 + WWW-Authenticate: Bearer → token endpoint, or Basic).
// Every call has a deadline; credentials never appear in an error.
import { createHash } from 'node:crypto'
import { createReadStream, createWriteStream, rmSync, statSync } from 'node:fs'
import { Transform, type Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { request, type Dispatcher } from 'undici'
import { LabctlError, oneLine } from '../errors.js'
import { describeNetError } from '../net/http.js'
import { basicHeader, parseChallenge, type AuthSource } from './auth.js'
import { MANIFEST_TYPES, registryScheme } from './ref.js'

export type Descriptor = { mediaType: string; digest: string; size: number; annotations?: Record<string, string>; artifactType?: string }
export type Manifest = { bytes: Buffer; mediaType: string; digest: string }
export type ClientOptions = { registry: string; insecure?: boolean; dispatcher?: Dispatcher; timeoutMs: number; auth: AuthSource; signal?: AbortSignal }
export type Progress = (doneBytes: number) => void

export const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`
const MAX_MANIFEST = 4 * 1024 * 1024
const MAX_REDIRECTS = 3

export class DigestMismatchError extends LabctlError {
  constructor(what: string, expected: string, actual: string) {
    super(`${what}: digest mismatch (expected ${expected}, got ${actual}): the source is corrupted or tampered with; nothing was tagged`, {
      code: 'DIGEST_MISMATCH',
      suggestion: 'do not use this copy; fetch it again from a trusted source (and check the source registry or the transfer medium)',
    })
  }
}

type SendOpts = { headers?: Record<string, string>; body?: () => Buffer | Readable; scope: string; what: string; timeoutMs?: number }

export class RegistryClient {
  readonly base: string
  private readonly tokens = new Map<string, string>()
  private basic: string | undefined

  constructor(readonly o: ClientOptions) {
    this.base = `${registryScheme(o.registry, o.insecure)}://${o.registry}`
  }

  static pullScope = (repo: string): string => `repository:${repo}:pull`
  static pushScope = (repo: string): string => `repository:${repo}:pull,push`

  private authHeader(scope: string): string | undefined {
    return this.tokens.get(scope) ?? this.basic
  }

  private async raw(method: Dispatcher.HttpMethod, url: string, headers: Record<string, string>, body: Buffer | Readable | undefined, timeoutMs: number): Promise<Dispatcher.ResponseData> {
    try {
      return await request(url, {
        method,
        headers,
        ...(body !== undefined ? { body } : {}),
        ...(this.o.dispatcher ? { dispatcher: this.o.dispatcher } : {}),
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        signal: this.o.signal ? AbortSignal.any([this.o.signal, AbortSignal.timeout(Math.max(timeoutMs, 1) * 20)]) : AbortSignal.timeout(Math.max(timeoutMs, 1) * 20),
      })
    } catch (err) {
      if (this.o.signal?.aborted) throw this.o.signal.reason
      throw new LabctlError(`registry ${this.o.registry}: ${describeNetError(err, timeoutMs)}`, {
        code: 'REGISTRY_UNREACHABLE',
        suggestion: `check that ${this.base}/v2/ answers from this machine (address, port, TLS, firewall)`,
      })
    }
  }

  /** One request with auth: on 401 it follows the challenge once (token or basic), then retries. */
  async send(method: Dispatcher.HttpMethod, path: string, so: SendOpts): Promise<Dispatcher.ResponseData> {
    const url = path.startsWith('http') ? path : `${this.base}${path}`
    const timeoutMs = so.timeoutMs ?? this.o.timeoutMs
    const go = (): Promise<Dispatcher.ResponseData> => {
      const auth = this.authHeader(so.scope)
      return this.raw(method, url, { ...so.headers, ...(auth ? { authorization: auth } : {}) }, so.body?.(), timeoutMs)
    }
    let res = await go()
    if (res.statusCode !== 401) return res
    const challenge = parseChallenge(String(res.headers['www-authenticate'] ?? ''))
    await res.body.dump()
    await this.authenticate(challenge, so.scope)
    res = await go()
    if (res.statusCode === 401 || res.statusCode === 403) {
      await res.body.dump()
      throw this.denied(so.what)
    }
    return res
  }

  private denied(what: string): LabctlError {
    const file = this.o.auth.file
    return new LabctlError(`registry ${this.o.registry} refused ${what}: not authorized`, {
      code: 'REGISTRY_AUTH',
      suggestion: file
        ? `check the credentials for ${this.o.registry} in ${file} (docker login / skopeo login; REGISTRY_AUTH_FILE); labctl reads its plain "auths" entries, it does not run credential helpers`
        : `log in first (\`docker login ${this.o.registry}\` or REGISTRY_AUTH_FILE=… skopeo login ${this.o.registry}); labctl reads docker's config.json or REGISTRY_AUTH_FILE`,
    })
  }

  private async authenticate(challenge: ReturnType<typeof parseChallenge>, scope: string): Promise<void> {
    const creds = this.o.auth.lookup(this.o.registry)
    if (challenge?.scheme === 'basic') {
      if (!creds) throw this.denied('access (it asks for a password)')
      this.basic = basicHeader(creds)
      return
    }
    if (challenge?.scheme !== 'bearer' || !challenge.params.realm) throw this.denied('access (unknown authentication challenge)')
    let realm: URL
    try {
      realm = new URL(challenge.params.realm)
    } catch {
      throw new LabctlError(`registry ${this.o.registry} sent an unusable token realm`, { code: 'REGISTRY_AUTH', suggestion: 'check the registry\'s token auth configuration' })
    }
    if (challenge.params.service) realm.searchParams.set('service', challenge.params.service)
    realm.searchParams.set('scope', scope)
    const res = await this.raw('GET', realm.toString(), creds ? { authorization: basicHeader(creds) } : {}, undefined, this.o.timeoutMs)
    const text = await res.body.text()
    if (res.statusCode !== 200) throw this.denied(`a token for ${scope} (token endpoint answered ${res.statusCode})`)
    let token: string | undefined
    try {
      const j = JSON.parse(text) as { token?: string; access_token?: string }
      token = j.token ?? j.access_token
    } catch {
      /* handled below */
    }
    if (!token) throw new LabctlError(`registry ${this.o.registry}: the token endpoint sent no token`, { code: 'REGISTRY_AUTH', suggestion: 'check the registry\'s token service' })
    this.tokens.set(scope, `Bearer ${token}`)
  }

  private async fail(res: Dispatcher.ResponseData, what: string): Promise<never> {
    const text = oneLine(await res.body.text().catch(() => ''), 200)
    let detail = text
    try {
      const e = (JSON.parse(text) as { errors?: Array<{ code?: string; message?: string }> }).errors?.[0]
      if (e) detail = `${e.code ?? ''} ${e.message ?? ''}`.trim()
    } catch {
      /* not JSON */
    }
    throw new LabctlError(`registry ${this.o.registry}: ${what}: HTTP ${res.statusCode}${detail ? ` (${detail})` : ''}`, {
      code: 'REGISTRY_ERROR',
      suggestion: res.statusCode === 404 ? 'check the repository and tag names' : `check the registry's log for ${what}`,
    })
  }

  async ping(): Promise<void> {
    const res = await this.send('GET', '/v2/', { scope: '', what: 'GET /v2/' })
    if (res.statusCode !== 200) return this.fail(res, 'GET /v2/ (is this an OCI registry?)')
    await res.body.dump()
  }

  /** The manifest's exact bytes and media type; its digest is verified against the reference or the registry's header. */
  async getManifest(repo: string, reference: string): Promise<Manifest> {
    const what = `manifest ${repo}:${reference}`
    const res = await this.send('GET', `/v2/${repo}/manifests/${reference}`, { scope: RegistryClient.pullScope(repo), what, headers: { accept: MANIFEST_TYPES.join(', ') } })
    if (res.statusCode !== 200) return this.fail(res, `GET ${what}`)
    const chunks: Buffer[] = []
    let size = 0
    for await (const c of res.body) {
      size += (c as Buffer).length
      if (size > MAX_MANIFEST) {
        res.body.destroy()
        throw new LabctlError(`${what} is larger than ${MAX_MANIFEST} bytes: refused`, { code: 'REGISTRY_ERROR', suggestion: 'check the source reference' })
      }
      chunks.push(c as Buffer)
    }
    const bytes = Buffer.concat(chunks)
    const digest = sha256(bytes)
    const expected = reference.startsWith('sha256:') ? reference : String(res.headers['docker-content-digest'] ?? '') || digest
    if (expected !== digest) throw new DigestMismatchError(what, expected, digest)
    let mediaType = String(res.headers['content-type'] ?? '').split(';')[0]!.trim()
    if (!mediaType || mediaType === 'application/json' || mediaType === 'application/octet-stream') {
      try {
        mediaType = (JSON.parse(bytes.toString('utf8')) as { mediaType?: string }).mediaType ?? mediaType
      } catch {
        /* checked by the caller */
      }
    }
    return { bytes, mediaType, digest }
  }

  /** The digest under a tag, or undefined when the tag is not there. */
  async headManifest(repo: string, reference: string): Promise<string | undefined> {
    const res = await this.send('HEAD', `/v2/${repo}/manifests/${reference}`, { scope: RegistryClient.pullScope(repo), what: `manifest ${repo}:${reference}`, headers: { accept: MANIFEST_TYPES.join(', ') } })
    await res.body.dump()
    if (res.statusCode === 404) return undefined
    if (res.statusCode !== 200) return this.fail(res, `HEAD manifest ${repo}:${reference}`)
    return String(res.headers['docker-content-digest'] ?? '') || undefined
  }

  async hasBlob(repo: string, digest: string, scope = RegistryClient.pullScope(repo)): Promise<boolean> {
    const res = await this.send('HEAD', `/v2/${repo}/blobs/${digest}`, { scope, what: `blob ${digest}` })
    await res.body.dump()
    if (res.statusCode === 200) return true
    if (res.statusCode === 404) return false
    return this.fail(res, `HEAD blob ${digest}`)
  }

  /** Streams a blob to `file`, hashing it; a wrong size or digest removes the file and throws. */
  async downloadBlob(repo: string, d: Descriptor, file: string, progress: Progress = () => {}): Promise<void> {
    const what = `blob ${d.digest}`
    let res = await this.send('GET', `/v2/${repo}/blobs/${d.digest}`, { scope: RegistryClient.pullScope(repo), what })
    // Registries may redirect blob downloads to their storage; follow a few, without our credentials.
    for (let i = 0; i < MAX_REDIRECTS && [301, 302, 303, 307, 308].includes(res.statusCode); i++) {
      const loc = String(res.headers.location ?? '')
      await res.body.dump()
      const target = new URL(loc, `${this.base}/v2/${repo}/blobs/${d.digest}`)
      res = target.host === this.o.registry ? await this.send('GET', target.toString(), { scope: RegistryClient.pullScope(repo), what }) : await this.raw('GET', target.toString(), {}, undefined, this.o.timeoutMs)
    }
    if (res.statusCode !== 200) return this.fail(res, `GET ${what}`)
    await verifyStreamToFile(res.body, d, file, what, progress)
  }

  /** Uploads `file` (already verified) unless present; tries a cross-repo mount first when `mountFrom` is given. */
  async uploadBlob(repo: string, d: Descriptor, file: string, o: { mountFrom?: string; progress?: Progress } = {}): Promise<'uploaded' | 'mounted'> {
    const scope = RegistryClient.pushScope(repo)
    const what = `upload of ${d.digest} to ${repo}`
    const q = o.mountFrom ? `?mount=${encodeURIComponent(d.digest)}&from=${encodeURIComponent(o.mountFrom)}` : ''
    const start = await this.send('POST', `/v2/${repo}/blobs/uploads/${q}`, { scope, what, headers: { 'content-length': '0' } })
    await start.body.dump()
    if (start.statusCode === 201 && o.mountFrom) return 'mounted'
    if (start.statusCode !== 202) return this.fail(start, `POST ${what}`)
    const loc = String(start.headers.location ?? '')
    if (!loc) throw new LabctlError(`registry ${this.o.registry}: no upload location for ${what}`, { code: 'REGISTRY_ERROR', suggestion: 'check the registry' })
    const url = new URL(loc, `${this.base}/v2/${repo}/blobs/uploads/`)
    if (url.host !== new URL(this.base).host) {
      throw new LabctlError(`registry ${this.o.registry} sent an upload location on another host (${url.host}): refused`, { code: 'REGISTRY_ERROR', suggestion: 'check the registry\'s proxy configuration' })
    }
    url.searchParams.set('digest', d.digest)
    let sent = 0
    const counted = (): Readable =>
      createReadStream(file).pipe(
        new Transform({
          transform(chunk: Buffer, _enc, cb) {
            sent += chunk.length
            o.progress?.(sent)
            cb(null, chunk)
          },
        }),
      )
    const put = await this.send('PUT', url.toString(), {
      scope,
      what,
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(d.size) },
      body: counted,
    })
    if (put.statusCode !== 201) return this.fail(put, `PUT ${what}`)
    await put.body.dump()
    return 'uploaded'
  }

  /** Puts the exact bytes under `reference` with their media type; the registry's digest must be ours. */
  async putManifest(repo: string, reference: string, m: Manifest): Promise<void> {
    const what = `manifest ${repo}:${reference}`
    const res = await this.send('PUT', `/v2/${repo}/manifests/${reference}`, {
      scope: RegistryClient.pushScope(repo),
      what,
      headers: { 'content-type': m.mediaType },
      body: () => m.bytes,
    })
    if (res.statusCode !== 201 && res.statusCode !== 200) return this.fail(res, `PUT ${what}`)
    await res.body.dump()
    const got = String(res.headers['docker-content-digest'] ?? '')
    if (got && got !== m.digest) throw new DigestMismatchError(`${what} as stored by the registry`, m.digest, got)
  }
}

/** Writes a stream to `file` while hashing; refuses more bytes than the descriptor says, a short body or a wrong digest. */
export async function verifyStreamToFile(body: Readable, d: Descriptor, file: string, what: string, progress: Progress = () => {}): Promise<void> {
  const hash = createHash('sha256')
  let n = 0
  try {
    await pipeline(
      body,
      new Transform({
        transform(chunk: Buffer, _enc, cb) {
          n += chunk.length
          if (n > d.size) return cb(new LabctlError(`${what}: more than the ${d.size} bytes its descriptor says: refused`, { code: 'DIGEST_MISMATCH', suggestion: 'the source is corrupted or tampered with' }))
          hash.update(chunk)
          progress(n)
          cb(null, chunk)
        },
      }),
      createWriteStream(file, { mode: 0o644 }),
    )
    const got = `sha256:${hash.digest('hex')}`
    if (n !== d.size) throw new LabctlError(`${what}: ${n} bytes instead of ${d.size}: refused`, { code: 'DIGEST_MISMATCH', suggestion: 'the transfer was cut short or the source is corrupted; rerun' })
    if (got !== d.digest) throw new DigestMismatchError(what, d.digest, got)
  } catch (err) {
    rmSync(file, { force: true })
    throw err
  }
}

/** Hashes a local file: its digest and size. */
export async function fileDigest(file: string): Promise<{ digest: string; size: number }> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer)
  return { digest: `sha256:${hash.digest('hex')}`, size: statSync(file).size }
}
