/**
 * Transport to one Jenkins for one operation: one user, one deadline, one connection pool.
 *
 * - Basic auth is sent preemptively (user + API token, or user + password): Jenkins does not challenge.
 * - With a password, Jenkins wants a CSRF crumb on POSTs: `fetchCrumb()` gets it from
 *   /crumbIssuer/api/json and POSTs send it back with the session cookie of that answer.
 *   API-token requests need none.
 * - Every text that leaves (errors, excerpts) is redacted of the secret, the token or password and
 *   the Basic header value; `run()` scrubs every error once more on the way out.
 */
import type { Agent, Dispatcher } from 'undici'
import { LabctlError, UsageError, errorMessage, oneLine } from '../errors.js'
import { describeNetError, httpRequest, labAgent, type HttpResult } from '../net/http.js'
import { redactError, redactText, redactUserinfo } from '../redact.js'
import { expectDocument, failure, notWhatWasExpected } from './answers.js'
import { CRUMB_PATH, parseCrumb, sessionCookie, type Crumb } from './documents.js'
import { decodeEntities, htmlSummary, looksLikeHtml } from './html.js'
import { JenkinsErrorCode, type JenkinsConnection } from './types.js'

export type SendOptions = { xml?: string; accept?: string }

/** Answers are read up to this size; Jenkins' own answers here are a few KB. */
const MAX_ANSWER_BYTES = 1024 * 1024

export class Session {
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
  private crumb: (Crumb & { cookie: string }) | undefined

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
      throw redactError(err, this.sensitive)
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
    return redactText(text, this.sensitive)
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
        maxBytes: MAX_ANSWER_BYTES,
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
    const res = await this.send('GET', CRUMB_PATH, what, { accept: 'application/json' })
    if (res.status === 404) return
    if (res.status !== 200) throw failure(this, res, what)
    expectDocument(this, res, 'JSON', what)
    const crumb = parseCrumb(res.body)
    if ('expected' in crumb) throw notWhatWasExpected(this, res, crumb.expected, what)
    this.crumb = { ...crumb.value, cookie: sessionCookie(res.headers['set-cookie']) }
  }

  private timeout(what: string): LabctlError {
    return new LabctlError(`Jenkins at ${this.host} did not answer within ${this.timeoutMs} ms (${what})`, {
      code: JenkinsErrorCode.Timeout,
      suggestion: 'Check that Jenkins is up and reachable (URL, proxy, firewall), or allow more time (--timeout)',
    })
  }
}

/** Checks the connection's input (exit 2 on bad input, nothing sent) and opens a session. */
export function openSession(conn: JenkinsConnection, secrets: string[]): Session {
  if (conn.apiToken !== undefined && conn.password !== undefined) {
    throw new UsageError('give either a Jenkins API token or a password, not both', { suggestion: 'Prefer the API token: it needs no CSRF crumb' })
  }
  if ((conn.apiToken !== undefined || conn.password !== undefined) && conn.user.length === 0) {
    throw new UsageError('a Jenkins user is needed with an API token or password', { suggestion: 'Give the Jenkins user the API token belongs to' })
  }
  if (conn.user.includes(':')) throw new UsageError('a Jenkins user name cannot contain ":"', { suggestion: 'Give the user name as Jenkins shows it under /user/<name>, without a password or token' })
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
