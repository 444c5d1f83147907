/**
 * Jenkins credentials-plugin client: create or update a "Secret text" credential over the REST API
 * (jenkinsci/credentials-plugin CredentialsStoreAction + plain-credentials StringCredentialsImpl).
 *
 * - Basic auth is sent preemptively (user + API token, or user + password).
 * - With a password, Jenkins wants a CSRF crumb on POSTs: it is fetched from /crumbIssuer/api/json
 *   and sent back with the session cookie of that answer. API-token requests need none.
 * - An update reads the credential's config.xml first: to learn whether it exists, to refuse to
 *   change a credential of another type, and to keep its scope and description.
 * - Jenkins never gives a secret back, so success here means "Jenkins stored it"; whether the secret
 *   works can only be checked where it is used.
 *
 * The secret, the API token and the password never appear in an error, a message or a result: every
 * text taken from a response is redacted (src/redact.ts) and shortened, and every error leaving this module
 * is scrubbed once more on the way out.
 */
import { XMLBuilder, XMLParser, XMLValidator } from 'fast-xml-parser'
import type { Agent, Dispatcher } from 'undici'
import { LabctlError, UsageError, errorMessage, oneLine } from '../errors.js'
import { describeNetError, httpRequest, labAgent, type HttpResult } from '../net/http.js'
import { redactError, redactText, redactUserinfo } from '../redact.js'

export const STRING_CREDENTIALS_CLASS = 'org.jenkinsci.plugins.plaincredentials.impl.StringCredentialsImpl'

/** `'system'` (the global domain of Jenkins' own store) or `'folder:<a>/<b>'` (a folder's store). */
export type JenkinsStore = 'system' | `folder:${string}`

export type JenkinsConnection = {
  /** Jenkins root URL, e.g. `https://jenkins.example.com/` or `https://host/jenkins`; no user info. */
  url: string
  user: string
  /** API token (preferred). Give at most one of apiToken and password; with neither, requests are anonymous. */
  apiToken?: string | undefined
  password?: string | undefined
  /** Budget for the whole operation, all requests together (ms). */
  timeoutMs: number
  /** PEM CA bundle to verify Jenkins' TLS certificate against (default: the system store). */
  caFile?: string | undefined
  /** Lab DNS servers to resolve Jenkins' name with (default: the system resolver). */
  dnsServers?: string[] | undefined
}

export type JenkinsStoreRef = JenkinsConnection & { store: JenkinsStore }
export type JenkinsCredentialRef = JenkinsStoreRef & { credentialId: string }

export type UpdateSecretTextOptions = JenkinsCredentialRef & {
  secret: string
  /** New description; when left out an update keeps the current one (a create uses ''). */
  description?: string | undefined
  /** Create the credential (scope GLOBAL) when it does not exist; default: fail with JENKINS_CREDENTIAL_NOT_FOUND. */
  create?: boolean | undefined
}

export type UpdateSecretTextResult = {
  action: 'created' | 'updated'
  store: JenkinsStore
  credentialId: string
  /** URL of the credential's config.xml (no user info, no secret). */
  credentialUrl: string
  scope: string
  description: string
  /** HTTP requests made. */
  requests: number
  durationMs: number
}

export type JenkinsCredentialSummary = { id: string; typeName: string; description: string }

/** `LabctlError.code` values thrown by this module (besides USAGE for bad input). */
export const JenkinsErrorCode = {
  /** 401: wrong user, API token or password. */
  Auth: 'JENKINS_AUTH',
  /** 403: authenticated but lacking a permission, or no credentials sent. */
  Forbidden: 'JENKINS_FORBIDDEN',
  /** 403 "No valid crumb was included in the request". */
  Crumb: 'JENKINS_CRUMB',
  /** 404 for the credential while its store is there. */
  CredentialNotFound: 'JENKINS_CREDENTIAL_NOT_FOUND',
  /** 404 for the store: no such folder, or the user may not view it. */
  StoreNotFound: 'JENKINS_STORE_NOT_FOUND',
  /** 409 on create: the id exists. */
  Conflict: 'JENKINS_CONFLICT',
  /** The credential exists but is not "Secret text". */
  WrongType: 'JENKINS_WRONG_TYPE',
  /** 5xx. */
  Server: 'JENKINS_SERVER_ERROR',
  /** HTML where XML/JSON was expected, unparsable answers, redirects, other statuses. */
  BadResponse: 'JENKINS_BAD_RESPONSE',
  Timeout: 'JENKINS_TIMEOUT',
  Unreachable: 'JENKINS_UNREACHABLE',
} as const

// ---------------------------------------------------------------------------------------------
// Public operations

/** Sets the secret of a "Secret text" credential, creating it first when `create` is set. */
export async function updateSecretText(opts: UpdateSecretTextOptions): Promise<UpdateSecretTextResult> {
  const started = performance.now()
  const store = parseStore(opts.store)
  const id = checkCredentialId(opts.credentialId)
  checkSecret(opts.secret)
  const s = openSession(opts, [opts.secret])
  return s.run(async () => {
    const cred = credentialPath(store, id)
    const done = (action: UpdateSecretTextResult['action'], scope: string, description: string): UpdateSecretTextResult => ({
      action,
      store: opts.store,
      credentialId: id,
      credentialUrl: s.urlOf(cred),
      scope,
      description,
      requests: s.requests,
      durationMs: Math.round(performance.now() - started),
    })

    if (s.authKind === 'password') await s.fetchCrumb()
    const current = await readCredential(s, store, id)

    if (current === undefined) {
      if (!opts.create) throw await missingCredential(s, store, id)
      const description = opts.description ?? ''
      const what = `creating credential ${id} in ${store.label}`
      const res = await s.send('POST', `${store.path}createCredentials`, what, { xml: secretTextXml({ scope: 'GLOBAL', id, description, secret: opts.secret }) })
      if (res.status === 200) {
        expectEmpty(s, res, what)
        return done('created', 'GLOBAL', description)
      }
      if (res.status === 404) throw storeMissing(s, store)
      if (res.status === 409) {
        throw new LabctlError(`credential ${id} already exists in ${store.label} (409)`, {
          code: JenkinsErrorCode.Conflict,
          suggestion: `Run again without --create to update it; if it still looks missing, check that ${s.user} may view it (Credentials/View)`,
        })
      }
      throw failure(s, res, what, store)
    }

    if (current.className !== STRING_CREDENTIALS_CLASS) {
      throw new LabctlError(`credential ${id} in ${store.label} is of type ${shortClass(current.className)}, not "Secret text"`, {
        code: JenkinsErrorCode.WrongType,
        suggestion: 'Use another credential id, or delete that credential in Jenkins first: labctl never changes the type of a credential',
      })
    }
    const scope = current.scope || 'GLOBAL'
    const description = opts.description ?? current.description
    const what = `updating credential ${id} in ${store.label}`
    const res = await s.send('POST', cred, what, { xml: secretTextXml({ scope, id, description, secret: opts.secret }) })
    if (res.status === 200) {
      expectEmpty(s, res, what)
      return done('updated', scope, description)
    }
    if (res.status === 404) throw await missingCredential(s, store, id)
    throw failure(s, res, what, store)
  })
}

/** Whether the credential exists in the store. A missing or invisible store is an error (JENKINS_STORE_NOT_FOUND). */
export async function credentialExists(opts: JenkinsCredentialRef): Promise<boolean> {
  const store = parseStore(opts.store)
  const id = checkCredentialId(opts.credentialId)
  const s = openSession(opts, [])
  return s.run(async () => {
    if ((await readCredential(s, store, id)) !== undefined) return true
    await probeStore(s, store) // throws when the store itself is the 404
    return false
  })
}

/** The credentials of a store's global domain (id, type name, description). */
export async function listCredentials(opts: JenkinsStoreRef): Promise<JenkinsCredentialSummary[]> {
  const store = parseStore(opts.store)
  const s = openSession(opts, [])
  return s.run(() => probeStore(s, store))
}

// ---------------------------------------------------------------------------------------------
// Input checks and paths

type ParsedStore = { kind: 'system' | 'folder'; folder: string[]; label: string; path: string }

/** Validates a store spec and builds its path (`…/domain/_/`, relative to the Jenkins root). */
export function parseStore(spec: string): ParsedStore {
  if (spec === 'system') return { kind: 'system', folder: [], label: 'the system store', path: '/credentials/store/system/domain/_/' }
  const m = /^folder:(.+)$/.exec(spec)
  const parts = m ? m[1]!.split('/').filter((p) => p.length > 0) : []
  if (!m || parts.length === 0 || parts.some((p) => p === '.' || p === '..' || /[\u0000-\u001f]/.test(p))) {
    throw new UsageError(`bad Jenkins credentials store "${oneLine(spec, 80)}"`, {
      suggestion: 'Use "system" or "folder:<folder>/<subfolder>" (the folder\'s full name as in its URL /job/<folder>/job/<subfolder>)',
    })
  }
  const name = parts.join('/')
  return {
    kind: 'folder',
    folder: parts,
    label: `the store of folder ${name}`,
    path: `${parts.map((p) => `/job/${encodeURIComponent(p)}`).join('')}/credentials/store/folder/domain/_/`,
  }
}

/** Jenkins' rule for credential ids (BaseStandardCredentials): letters, digits, '_', '.', '-'. */
function checkCredentialId(id: string): string {
  if (!/^[A-Za-z0-9_.-]+$/.test(id)) {
    throw new UsageError(`bad Jenkins credential id "${oneLine(id, 80)}"`, { suggestion: 'Jenkins credential ids use only letters, digits, "_", "." and "-"' })
  }
  return id
}

/** Characters XML 1.0 cannot carry at all (escaped or not): C0 controls but tab/LF/CR, U+FFFE/U+FFFF, lone surrogates. */
const NON_XML_CHAR = /[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u

function checkSecret(secret: string): void {
  if (secret.trim().length === 0) throw new UsageError('the secret is empty', { suggestion: 'Give the secret value (from a file or stdin); Jenkins would store an empty secret as is' })
  if (NON_XML_CHAR.test(secret)) {
    throw new UsageError('the secret contains control characters that cannot be sent in XML', {
      suggestion: 'Check the secret source (a binary file? a stray escape sequence?)',
    })
  }
}

function credentialPath(store: ParsedStore, id: string): string {
  return `${store.path}credential/${encodeURIComponent(id)}/config.xml`
}

function shortClass(className: string): string {
  return className.split('.').pop() ?? className
}

// ---------------------------------------------------------------------------------------------
// XML

const builder = new XMLBuilder({ format: true, indentBy: '  ', suppressEmptyNode: false })

/**
 * The StringCredentialsImpl document. XMLBuilder escapes & < > " '; a CR is written as a character
 * reference because XML parsers turn a literal CR (or CRLF) into LF, which would change the secret.
 */
export function secretTextXml(c: { scope: string; id: string; description: string; secret: string }): string {
  const xml = builder.build({ [STRING_CREDENTIALS_CLASS]: { scope: c.scope, id: c.id, description: c.description, secret: c.secret } }) as string
  return xml.replace(/\r/g, '&#13;')
}

const parser = new XMLParser({ ignoreAttributes: true, ignoreDeclaration: true, ignorePiTags: true, parseTagValue: false, trimValues: false, htmlEntities: true })

type CurrentCredential = { className: string; scope: string; description: string }

/** GET config.xml → the credential's class, scope and description; undefined on 404. */
async function readCredential(s: Session, store: ParsedStore, id: string): Promise<CurrentCredential | undefined> {
  const what = `reading credential ${id} in ${store.label}`
  const res = await s.send('GET', credentialPath(store, id), what, { accept: 'application/xml' })
  if (res.status === 404) return undefined
  if (res.status !== 200) throw failure(s, res, what, store)
  if (looksLikeHtml(res)) throw htmlInstead(s, res, 'XML', what)
  if (XMLValidator.validate(res.body) !== true) throw notWhatWasExpected(s, res, 'XML', what)
  const doc = parser.parse(res.body) as Record<string, unknown>
  const root = Object.keys(doc).find((k) => k !== '#text')
  const fields = root ? doc[root] : undefined
  if (!root || typeof fields !== 'object' || fields === null) throw notWhatWasExpected(s, res, 'a credential in XML', what)
  const text = (v: unknown): string => (typeof v === 'string' ? v : '')
  const f = fields as Record<string, unknown>
  return { className: root, scope: text(f.scope).trim(), description: text(f.description) }
}

// ---------------------------------------------------------------------------------------------
// 404s: a missing credential and a missing (or invisible) store look alike; the store's api/json tells them apart.

async function probeStore(s: Session, store: ParsedStore): Promise<JenkinsCredentialSummary[]> {
  const what = `listing ${store.label}`
  const tree = encodeURIComponent('credentials[id,typeName,description]')
  const res = await s.send('GET', `${store.path}api/json?tree=${tree}`, what, { accept: 'application/json' })
  if (res.status === 404) throw storeMissing(s, store)
  if (res.status !== 200) throw failure(s, res, what, store)
  if (looksLikeHtml(res)) throw htmlInstead(s, res, 'JSON', what)
  let doc: unknown
  try {
    doc = JSON.parse(res.body)
  } catch {
    throw notWhatWasExpected(s, res, 'JSON', what)
  }
  const list = (doc as { credentials?: unknown }).credentials
  if (!Array.isArray(list)) throw notWhatWasExpected(s, res, 'a credentials list', what)
  return list.map((c: Record<string, unknown>) => ({
    id: String(c.id ?? ''),
    typeName: String(c.typeName ?? ''),
    description: typeof c.description === 'string' ? c.description : '',
  }))
}

async function missingCredential(s: Session, store: ParsedStore, id: string): Promise<LabctlError> {
  await probeStore(s, store) // throws if the store is what is missing
  return new LabctlError(`credential ${id} does not exist in ${store.label} (404)`, {
    code: JenkinsErrorCode.CredentialNotFound,
    suggestion: `Pass --create to create it, or check the credential id and the store (folder stores are "folder:<a>/<b>")`,
  })
}

function storeMissing(s: Session, store: ParsedStore): LabctlError {
  const message =
    store.kind === 'system'
      ? `Jenkins shows user ${s.user} no system credentials store (404)`
      : `Jenkins has no folder ${store.folder.join('/')}, or user ${s.user} may not view its credentials (404)`
  return new LabctlError(message, {
    code: JenkinsErrorCode.StoreNotFound,
    suggestion:
      store.kind === 'system'
        ? `Check the Jenkins URL (root URL, with any context path such as /jenkins) and that ${s.user} has Credentials/View there`
        : `Check the folder's full name (folder:a/b is the folder at /job/a/job/b) and that ${s.user} has Credentials/View on it`,
  })
}

// ---------------------------------------------------------------------------------------------
// Mapping answers to errors

function failure(s: Session, res: HttpResult, what: string, store?: ParsedStore): LabctlError {
  const status = res.status
  const host = s.host
  if (status === 401) {
    const what401 = s.authKind === 'password' ? 'password' : 'API token'
    return new LabctlError(
      s.authKind === 'none' ? `Jenkins at ${host} asks for credentials (401)` : `Jenkins rejected user ${s.user}'s ${what401} (401)`,
      {
        code: JenkinsErrorCode.Auth,
        suggestion:
          s.authKind === 'password'
            ? `Check the user name and password, or better use an API token (created under ${s.urlOf(`/user/${encodeURIComponent(s.user)}/configure`)})`
            : `Check the user name and API token; create a new token under ${s.urlOf(`/user/${encodeURIComponent(s.user)}/configure`)} if it was revoked`,
      },
    )
  }
  if (status === 403) {
    const body = s.redact(res.body)
    if (/No valid crumb/i.test(body)) {
      return new LabctlError(`Jenkins refused ${what}: no valid CSRF crumb (403)`, {
        code: JenkinsErrorCode.Crumb,
        suggestion: 'Use an API token instead of a password (API-token requests need no crumb); if a proxy sits in front of Jenkins, make sure it keeps the session cookie',
      })
    }
    if (s.authKind === 'none') {
      return new LabctlError(`Jenkins at ${host} refused anonymous access (403): no credentials were sent`, {
        code: JenkinsErrorCode.Forbidden,
        suggestion: 'Give a Jenkins user and an API token',
      })
    }
    const missing = /is missing the ([\w ]+\/[\w ]+) permission/.exec(body)
    const where = store ? ` on ${store.label}` : ''
    return new LabctlError(
      missing ? `Jenkins user ${s.user} lacks the ${missing[1]} permission${where} (403)` : `Jenkins denied user ${s.user} ${what} (403)`,
      {
        code: JenkinsErrorCode.Forbidden,
        suggestion: `Ask a Jenkins admin to grant ${s.user} Credentials/View, Create and Update${where}`,
      },
    )
  }
  if (status >= 300 && status < 400) {
    const location = headerOf(res, 'location')
    const to = location ? ` to ${oneLine(s.redact(stripQuery(location)), 160)}` : ''
    return new LabctlError(`Jenkins at ${host} redirected ${what}${to} (${status})`, {
      code: JenkinsErrorCode.BadResponse,
      suggestion: 'Use the Jenkins root URL exactly as Jenkins knows it (https? context path such as /jenkins?)',
    })
  }
  const excerpt = s.excerpt(res)
  const tail = excerpt ? `: ${excerpt}` : ''
  if (status === 502 || status === 503 || status === 504) {
    return new LabctlError(`Jenkins at ${host} is unavailable (${status}) while ${what}${tail}`, {
      code: JenkinsErrorCode.Server,
      suggestion: 'Jenkins may be starting or restarting, or the proxy in front of it cannot reach it: retry in a minute, then check the proxy and Jenkins',
    })
  }
  if (status >= 500) {
    return new LabctlError(`Jenkins failed (${status}) while ${what}${tail}`, {
      code: JenkinsErrorCode.Server,
      suggestion: 'Look at the Jenkins system log (Manage Jenkins → System Log); a failure on create or update can mean Jenkins cannot read the credential (is the Plain Credentials plugin installed?)',
    })
  }
  return new LabctlError(`unexpected answer from Jenkins at ${host} (${status}) while ${what}${tail}`, {
    code: JenkinsErrorCode.BadResponse,
    suggestion: 'Check the Jenkins URL and that the Credentials plugin is installed',
  })
}

function looksLikeHtml(res: HttpResult): boolean {
  const type = String(headerOf(res, 'content-type') ?? '')
  return /html/i.test(type) || /^\s*(<!doctype html|<html)/i.test(res.body)
}

function htmlInstead(s: Session, res: HttpResult, expected: string, what: string): LabctlError {
  const excerpt = s.excerpt(res)
  return new LabctlError(`Jenkins at ${s.host} answered with an HTML page${excerpt ? ` ("${excerpt}")` : ''} where ${expected} was expected while ${what}`, {
    code: JenkinsErrorCode.BadResponse,
    suggestion: 'Check that the URL is the Jenkins root and not a login page or proxy; a single sign-on proxy in front of Jenkins must let API requests through',
  })
}

function notWhatWasExpected(s: Session, res: HttpResult, expected: string, what: string): LabctlError {
  const excerpt = s.excerpt(res)
  return new LabctlError(`Jenkins at ${s.host} did not answer with ${expected} while ${what}${excerpt ? `: ${excerpt}` : ''}`, {
    code: JenkinsErrorCode.BadResponse,
    suggestion: 'Check that the URL is the Jenkins root URL and that the Credentials plugin is installed',
  })
}

/** Create and update answer 200 with an empty body; an HTML page with 200 is a login page or proxy, not success. */
function expectEmpty(s: Session, res: HttpResult, what: string): void {
  if (looksLikeHtml(res)) throw htmlInstead(s, res, 'an empty answer', what)
}

function headerOf(res: HttpResult, name: string): string | undefined {
  const v = res.headers[name]
  return Array.isArray(v) ? v[0] : v
}

function stripQuery(url: string): string {
  return url.replace(/[?#].*$/, '')
}

// ---------------------------------------------------------------------------------------------
// Redaction

/** Replaces every spelling of every sensitive value with the one redaction marker (the one redactor). */
export function redactSecrets(text: string, values: readonly string[]): string {
  return redactText(text, values)
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: ' ' }

function decodeEntities(text: string): string {
  return text.replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (m, e: string) => {
    if (e[0] === '#') {
      const n = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10)
      return Number.isFinite(n) && n >= 0 && n <= 0x10ffff ? String.fromCodePoint(n) : m
    }
    return ENTITIES[e.toLowerCase()] ?? m
  })
}

/** The telling part of an HTML page: its title, or its first heading and paragraph. */
function htmlSummary(html: string): string {
  const grab = (tag: string): string => {
    const m = new RegExp(`<${tag}\\b[^>]*>([\\s\\S]*?)</${tag}>`, 'i').exec(html)
    return m ? decodeEntities(m[1]!.replace(/<[^>]*>/g, ' ')).replace(/\s+/g, ' ').trim() : ''
  }
  const title = grab('title')
  if (title && !/\[Jenkins\]$/.test(title)) return title
  const parts = [grab('h1') || grab('h2'), grab('p')].filter(Boolean)
  if (parts.length > 0) return parts.join(': ')
  return decodeEntities(html.replace(/<script[\s\S]*?<\/script>/gi, ' ').replace(/<[^>]*>/g, ' '))
}

// ---------------------------------------------------------------------------------------------
// Session: one Jenkins, one user, one deadline, one connection pool

type SendOptions = { xml?: string; accept?: string }

class Session {
  readonly base: URL
  readonly host: string
  readonly user: string
  readonly authKind: 'token' | 'password' | 'none'
  requests = 0
  private readonly timeoutMs: number
  private readonly deadline: number
  private readonly authorization: string | undefined
  /** Everything that must never be printed: the secret, the token or password, and the Basic header value. */
  private readonly sensitive: string[]
  private readonly agent: Agent
  private crumb: { field: string; value: string; cookie: string } | undefined

  constructor(conn: JenkinsConnection, secrets: string[]) {
    this.user = conn.user
    const pass = conn.apiToken ?? conn.password
    this.authKind = conn.apiToken !== undefined ? 'token' : conn.password !== undefined ? 'password' : 'none'
    this.authorization = pass !== undefined ? `Basic ${Buffer.from(`${conn.user}:${pass}`, 'utf8').toString('base64')}` : undefined
    this.sensitive = [...secrets, ...(pass !== undefined ? [pass] : []), ...(this.authorization ? [this.authorization.slice(6)] : [])]
    this.timeoutMs = conn.timeoutMs
    this.deadline = performance.now() + conn.timeoutMs
    this.base = parseBaseUrl(conn.url)
    this.host = this.base.host
    try {
      this.agent = labAgent({ caFile: conn.caFile, dnsServers: conn.dnsServers, connectTimeoutMs: conn.timeoutMs })
    } catch (err) {
      throw new UsageError(`cannot read the CA file: ${oneLine(errorMessage(err), 200)}`, { suggestion: 'Give a readable PEM CA bundle' })
    }
  }

  /** Runs the operation, then closes the connections; any error leaves scrubbed of sensitive values. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn()
    } catch (err) {
      throw scrub(err, this.sensitive)
    } finally {
      await this.agent.destroy().catch(() => undefined)
    }
  }

  /** Absolute URL for a path below the Jenkins root (keeps a context path such as /jenkins). */
  urlOf(path: string): string {
    const root = this.base.href.replace(/\/+$/, '')
    return `${root}${path}`
  }

  redact(text: string): string {
    return redactSecrets(text, this.sensitive)
  }

  /** A short, one-line, redacted piece of a response body for an error message. */
  excerpt(res: HttpResult): string {
    // Redact before and after every transformation: flattening or entity decoding could otherwise
    // turn an echoed secret into a spelling the first pass did not catch.
    let text = this.redact(res.body)
    text = looksLikeHtml(res) ? htmlSummary(text) : text
    text = this.redact(decodeEntities(text))
    return this.redact(oneLine(text, 200))
  }

  async send(method: Dispatcher.HttpMethod, path: string, what: string, opts: SendOptions = {}): Promise<HttpResult> {
    const remaining = Math.floor(this.deadline - performance.now())
    if (remaining <= 0) throw this.timeout(what)
    const headers: Record<string, string> = { Accept: opts.accept ?? '*/*' }
    if (this.authorization) headers.Authorization = this.authorization // preemptive: Jenkins does not challenge
    if (opts.xml !== undefined) headers['Content-Type'] = 'application/xml; charset=UTF-8'
    if (method === 'POST' && this.crumb) {
      headers[this.crumb.field] = this.crumb.value
      if (this.crumb.cookie) headers.Cookie = this.crumb.cookie
    }
    this.requests++
    try {
      return await httpRequest(this.urlOf(path), {
        method,
        headers,
        ...(opts.xml !== undefined ? { body: opts.xml } : {}),
        timeoutMs: remaining,
        dispatcher: this.agent,
        maxBytes: 1024 * 1024,
      })
    } catch (err) {
      if (err instanceof LabctlError) throw err
      const detail = describeNetError(err, this.timeoutMs)
      if (detail.startsWith('timed out')) throw this.timeout(what)
      // No `cause`: network errors are summarized, never carried along with whatever they hold.
      throw new LabctlError(`cannot reach Jenkins at ${this.host}: ${this.redact(detail)}`, {
        code: JenkinsErrorCode.Unreachable,
        suggestion: /certificate|self.signed|CERT|TLS|SSL/i.test(detail)
          ? 'Give the CA bundle that signed Jenkins\' certificate (--ca-file)'
          : 'Check the Jenkins URL and that Jenkins is up and reachable from here',
      })
    }
  }

  /** GET /crumbIssuer/api/json: the crumb plus the session cookie it belongs to. 404 means CSRF protection is off. */
  async fetchCrumb(): Promise<void> {
    const what = 'fetching a CSRF crumb'
    const res = await this.send('GET', '/crumbIssuer/api/json', what, { accept: 'application/json' })
    if (res.status === 404) return
    if (res.status !== 200) throw failure(this, res, what)
    if (looksLikeHtml(res)) throw htmlInstead(this, res, 'JSON', what)
    let doc: { crumb?: unknown; crumbRequestField?: unknown }
    try {
      doc = JSON.parse(res.body) as typeof doc
    } catch {
      throw notWhatWasExpected(this, res, 'JSON', what)
    }
    if (typeof doc.crumb !== 'string' || typeof doc.crumbRequestField !== 'string') throw notWhatWasExpected(this, res, 'a crumb', what)
    const setCookie = res.headers['set-cookie']
    const cookies = (Array.isArray(setCookie) ? setCookie : setCookie ? [setCookie] : []).map((c) => c.split(';')[0]!.trim()).filter(Boolean)
    this.crumb = { field: doc.crumbRequestField, value: doc.crumb, cookie: cookies.join('; ') }
  }

  private timeout(what: string): LabctlError {
    return new LabctlError(`Jenkins at ${this.host} did not answer within ${this.timeoutMs} ms (${what})`, {
      code: JenkinsErrorCode.Timeout,
      suggestion: 'Check that Jenkins is up and reachable (URL, proxy, firewall), or allow more time (--timeout)',
    })
  }
}

function openSession(conn: JenkinsConnection, secrets: string[]): Session {
  if (conn.apiToken !== undefined && conn.password !== undefined) {
    throw new UsageError('give either a Jenkins API token or a password, not both', { suggestion: 'Prefer the API token: it needs no CSRF crumb' })
  }
  if ((conn.apiToken !== undefined || conn.password !== undefined) && conn.user.length === 0) {
    throw new UsageError('a Jenkins user is needed with an API token or password')
  }
  if (conn.user.includes(':')) throw new UsageError('a Jenkins user name cannot contain ":"')
  return new Session(conn, secrets)
}

function parseBaseUrl(url: string): URL {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    // Shown without any user info, which may hold a token.
    throw new UsageError(`bad Jenkins URL "${oneLine(redactUserinfo(url), 120)}"`, { suggestion: 'Give the Jenkins root URL, e.g. https://jenkins.example.com/' })
  }
  // Not echoed: user info in a URL is usually a token.
  if (u.username || u.password) throw new UsageError('the Jenkins URL must not contain a user or password', { suggestion: 'Give the user and API token separately' })
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`bad Jenkins URL scheme ${u.protocol}`, { suggestion: 'Use https:// (or http://)' })
  u.search = ''
  u.hash = ''
  return u
}

/** Redacts sensitive values from an error's message, stack, suggestion, details and causes (in place). */
function scrub(err: unknown, sensitive: readonly string[]): unknown {
  return redactError(err, sensitive)
}
