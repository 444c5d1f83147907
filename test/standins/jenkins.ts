/**
 * A Jenkins stand-in for tests: just enough of Jenkins core + the credentials plugin
 * (jenkinsci/credentials-plugin CredentialsStoreAction, plain-credentials StringCredentialsImpl)
 * to exercise labctl's Jenkins client, answering the way the real thing does:
 *
 * - stores: system `/credentials/store/system/domain/_/` (also under `/manage/…`) and folder
 *   stores `/job/<a>/job/<b>/credentials/store/folder/domain/_/`;
 * - `POST …/createCredentials` (XML) → 200 empty, 409 when the id exists;
 *   `GET …/credential/<id>/config.xml` → XML with `<secret><secret-redacted/></secret>`;
 *   `POST …/credential/<id>/config.xml` → 200 empty; `DELETE …/credential/<id>/config.xml` → 200;
 *   `GET …/domain/_/api/json?tree=credentials[id,typeName,description]`;
 *   unparsable XML → 500 (Jenkins' "Oops!" page);
 * - Basic auth with API tokens or passwords; a wrong one → 401 + `WWW-Authenticate: Basic realm="Jenkins"`;
 *   no credentials → 403; a store the user may not view → 404; missing permission → 403;
 * - CSRF: a POST authenticated by password needs the crumb from `GET /crumbIssuer/api/json` and the
 *   session cookie of that response, else 403 "No valid crumb was included in the request";
 *   API-token requests need no crumb (as in Jenkins, only POST is checked).
 *
 * It records every request (minus the Authorization header) and keeps the plaintext secrets it
 * stored, so tests can check exactly what reached "Jenkins". Faults can be injected for the next
 * N requests: 500, 401, an HTML page, or a hang (the request is never answered).
 */
import { randomBytes, randomUUID } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { XMLBuilder, XMLParser, XMLValidator } from 'fast-xml-parser'

export const STRING_CREDENTIALS = 'org.jenkinsci.plugins.plaincredentials.impl.StringCredentialsImpl'
export const USERNAME_PASSWORD_CREDENTIALS = 'com.cloudbees.plugins.credentials.impl.UsernamePasswordCredentialsImpl'

/** The credential classes the stand-in can unmarshal; anything else fails like XStream does (500). */
const KNOWN_TYPES: Record<string, { typeName: string; plugin: string; secretField: string }> = {
  [STRING_CREDENTIALS]: { typeName: 'Secret text', plugin: 'plain-credentials@183.va_de8f1dd5a_2b_', secretField: 'secret' },
  [USERNAME_PASSWORD_CREDENTIALS]: { typeName: 'Username with password', plugin: 'credentials@1337.v60b_d7b_c7b_c9f', secretField: 'password' },
}

/** `'system'` or `'folder:a/b'` (the folder's full name). */
export type StandinStoreKey = 'system' | `folder:${string}`

export type StandinUser = {
  name: string
  apiToken?: string
  password?: string
  /** Folders (full names, e.g. `team/scanners`) whose stores this user may view; default: all. */
  folders?: string[]
  /** May view the system store (default true). */
  system?: boolean
  /** Only Credentials/View: create, update and delete answer 403. */
  readOnly?: boolean
}

export type StoredCredential = {
  className: string
  id: string
  scope: string
  description: string
  /** The plaintext secret as Jenkins stored it (`secret` of Secret text, `password` of Username with password). */
  secret: string
  /** Other plain fields (e.g. `username`), in document order. */
  extra: Record<string, string>
}

export type SeedCredential = { store: StandinStoreKey; id: string; secret: string; description?: string; scope?: string; className?: string; extra?: Record<string, string> }

export type ReceivedRequest = {
  method: string
  /** Path and query, as sent. */
  path: string
  /** Lower-cased request headers, without `authorization`. */
  headers: Record<string, string | string[] | undefined>
  body: string
  /** How the request authenticated: `invalid` when Basic credentials were sent but did not match. */
  auth: { kind: 'token' | 'password' | 'anonymous' | 'invalid'; user?: string }
  /** The status answered (undefined while unanswered, e.g. a hang fault). */
  status?: number
  /** The injected fault that answered this request, if any. */
  fault?: FaultKind
}

/**
 * `500`: Jenkins' "Oops!" page (500); `echo500`: a plain-text 500 that quotes the request's `<secret>`
 * element and then the whole request body (as a verbose proxy or debug page might: tests that clients
 * redact what they print); `401`: a Basic challenge; `html`: a 200 HTML login
 * page (an SSO proxy in front of Jenkins); `hang`: never answer; `slow`: answer normally, but only
 * after `slowMs`.
 */
export type FaultKind = '500' | 'echo500' | '401' | 'html' | 'hang' | 'slow'

export type StandinOptions = {
  users?: StandinUser[]
  /** Folder full names that exist (parents are implied), e.g. `['team/scanners']`. */
  folders?: string[]
  credentials?: SeedCredential[]
  /** Context path Jenkins is served under, e.g. `/jenkins` (default: the root). */
  prefix?: string
  /** Delay of the `slow` fault (default 300 ms). */
  slowMs?: number
  /** Where to listen (default 127.0.0.1 on a free port); the sandbox's jenkins node uses its lab address. */
  listen?: { host: string; port: number }
}

export type JenkinsStandin = {
  /** Jenkins root URL, without a trailing slash (includes the prefix). */
  url: string
  received: ReceivedRequest[]
  /** Store key → credential id → credential (plaintext secrets included). */
  credentials: Map<StandinStoreKey, Map<string, StoredCredential>>
  /** The plaintext secret stored for a credential, or undefined if there is no such credential. */
  secretOf(store: StandinStoreKey, id: string): string | undefined
  /** The next `count` requests (default 1) are answered by the fault instead of "Jenkins". */
  setFault(kind: FaultKind | null, count?: number): void
  /**
   * Calls `fn` for each request once it is read, before faults and routing: a test can change the
   * state mid-operation (a concurrent create) or set a fault for exactly this request.
   */
  onRequest(fn: ((req: ReceivedRequest) => void) | null): void
  /** Forgets every session, as a restart or a session timeout does: crumbs issued so far stop working. */
  dropSessions(): void
  stop(): Promise<void>
}

const SESSION_COOKIE = 'JSESSIONID.5f3c8a1e'

const xmlParser = new XMLParser({
  ignoreAttributes: true,
  ignoreDeclaration: true,
  ignorePiTags: true,
  parseTagValue: false,
  // Keep leading/trailing blanks of values exactly (XStream does); the whitespace between elements
  // then shows up as '#text' entries, which are ignored below.
  trimValues: false,
  // Decodes numeric character references (&#13;) besides the five XML entities.
  htmlEntities: true,
})
const xmlBuilder = new XMLBuilder({ format: true, indentBy: '  ', ignoreAttributes: false, attributeNamePrefix: '@_', suppressEmptyNode: true })

function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;')
}

/** Jetty's error page, which Jenkins sends for sendError() (401, crumb 403, 404, 400). */
function jettyError(status: number, message: string, uri: string): string {
  const m = escapeHtml(message)
  return (
    `<html>\n<head>\n<meta http-equiv="Content-Type" content="text/html;charset=utf-8"/>\n<title>Error ${status} ${m}</title>\n</head>\n` +
    `<body><h2>HTTP ERROR ${status} ${m}</h2>\n<table>\n<tr><th>URI:</th><td>${escapeHtml(uri)}</td></tr>\n` +
    `<tr><th>STATUS:</th><td>${status}</td></tr>\n<tr><th>MESSAGE:</th><td>${m}</td></tr>\n</table>\n</body>\n</html>\n`
  )
}

/** Jenkins' own error pages (rendered by Jelly): access denied, "Oops!". */
function jenkinsPage(title: string, h1: string, text: string, pre = ''): string {
  return (
    `<!DOCTYPE html><html class=""><head resURL="/static/abcd1234"><title>${escapeHtml(title)} [Jenkins]</title></head>` +
    `<body><div id="main-panel"><h1>${escapeHtml(h1)}</h1><p>${escapeHtml(text)}</p>` +
    (pre ? `<pre>${escapeHtml(pre)}</pre>` : '') +
    `</div></body></html>\n`
  )
}

type Auth = ReceivedRequest['auth'] & { u?: StandinUser }

/** Where a request points: a crumb, a store (and what under it), or nothing we know. */
type Route =
  | { kind: 'crumb' }
  | { kind: 'store'; store: StandinStoreKey; folder?: string; domain: string; rest: string }
  | { kind: 'none' }

function route(pathname: string): Route {
  if (pathname === '/crumbIssuer/api/json') return { kind: 'crumb' }
  const sys = /^(?:\/manage)?\/credentials\/store\/system\/domain\/([^/]+)(?:\/(.*))?$/.exec(pathname)
  if (sys) return { kind: 'store', store: 'system', domain: decodeURIComponent(sys[1]!), rest: sys[2] ?? '' }
  const folder = /^((?:\/job\/[^/]+)+)\/credentials\/store\/folder\/domain\/([^/]+)(?:\/(.*))?$/.exec(pathname)
  if (folder) {
    const name = folder[1]!
      .split('/job/')
      .filter(Boolean)
      .map((s) => decodeURIComponent(s))
      .join('/')
    return { kind: 'store', store: `folder:${name}`, folder: name, domain: decodeURIComponent(folder[2]!), rest: folder[3] ?? '' }
  }
  return { kind: 'none' }
}

export async function startJenkinsStandin(opts: StandinOptions = {}): Promise<JenkinsStandin> {
  const users = opts.users ?? []
  const prefix = (opts.prefix ?? '').replace(/\/+$/, '')
  // Every folder and its parents exist.
  const folders = new Set<string>()
  for (const f of opts.folders ?? []) {
    const parts = f.split('/').filter(Boolean)
    for (let i = 1; i <= parts.length; i++) folders.add(parts.slice(0, i).join('/'))
  }
  const credentials = new Map<StandinStoreKey, Map<string, StoredCredential>>()
  const storeOf = (key: StandinStoreKey): Map<string, StoredCredential> => {
    let m = credentials.get(key)
    if (!m) credentials.set(key, (m = new Map()))
    return m
  }
  for (const c of opts.credentials ?? []) {
    storeOf(c.store).set(c.id, {
      className: c.className ?? STRING_CREDENTIALS,
      id: c.id,
      scope: c.scope ?? 'GLOBAL',
      description: c.description ?? '',
      secret: c.secret,
      extra: c.extra ?? {},
    })
  }

  const received: ReceivedRequest[] = []
  /** Session id → the crumb issued in it and the user it was issued to. */
  const sessions = new Map<string, { crumb: string; user: string | undefined }>()
  let fault: { kind: FaultKind; left: number } | null = null
  let hook: ((req: ReceivedRequest) => void) | null = null
  const hanging = new Set<ServerResponse>()
  const timers = new Set<NodeJS.Timeout>()
  const sockets = new Set<Socket>()

  function authenticate(req: IncomingMessage): Auth {
    const header = req.headers.authorization
    const m = header ? /^Basic\s+(\S+)$/i.exec(header) : null
    if (!m) return { kind: 'anonymous' }
    const decoded = Buffer.from(m[1]!, 'base64').toString('utf8')
    const colon = decoded.indexOf(':')
    const name = colon < 0 ? decoded : decoded.slice(0, colon)
    const pass = colon < 0 ? '' : decoded.slice(colon + 1)
    const u = users.find((x) => x.name === name)
    // Jenkins tries the value as an API token first, then as the password.
    if (u?.apiToken !== undefined && u.apiToken === pass) return { kind: 'token', user: name, u }
    if (u?.password !== undefined && u.password === pass) return { kind: 'password', user: name, u }
    return { kind: 'invalid', user: name }
  }

  function sessionOf(req: IncomingMessage): string | undefined {
    const cookie = req.headers.cookie ?? ''
    for (const part of cookie.split(';')) {
      const [k, v] = part.trim().split('=')
      if (k === SESSION_COOKIE && v && sessions.has(v)) return v
    }
    return undefined
  }

  function send(res: ServerResponse, status: number, body = '', type = 'text/html;charset=utf-8', headers: Record<string, string> = {}): void {
    res.writeHead(status, { ...(body ? { 'Content-Type': type } : {}), 'X-Jenkins': '2.516.1', ...headers })
    res.end(body)
  }

  function answerFault(kind: FaultKind, req: IncomingMessage, body: string, res: ServerResponse, rec: ReceivedRequest): void {
    switch (kind) {
      case 'hang':
        hanging.add(res) // never answered; stop() tears the socket down
        return
      case '401':
        return send(res, 401, jettyError(401, 'Invalid password/token for user: someone', req.url ?? '/'), undefined, { 'WWW-Authenticate': 'Basic realm="Jenkins"' })
      case 'html':
        return send(res, 200, `<!DOCTYPE html><html><head><title>Sign in - Lab SSO</title></head><body><h1>Sign in</h1><form method="post"><input name="username"></form></body></html>\n`)
      case 'slow': {
        const t = setTimeout(() => {
          timers.delete(t)
          serveSafely(req, body, res, rec)
        }, opts.slowMs ?? 300)
        timers.add(t)
        return
      }
      case '500':
        return send(res, 500, jenkinsPage('Jenkins', 'Oops!', 'A problem occurred while processing the request.', 'java.lang.NullPointerException\n\tat hudson.Something'))
      case 'echo500': {
        const secret = /<secret>[\s\S]*?<\/secret>/.exec(body)?.[0] ?? ''
        return send(res, 500, `cannot store ${secret}\nrequest was:\n${body}`, 'text/plain;charset=utf-8')
      }
    }
  }

  /** Parses a credential XML as XStream would; a string is the error message (→ 500). */
  function unmarshal(xml: string): StoredCredential | string {
    if (/<!DOCTYPE/i.test(xml)) return 'org.xml.sax.SAXParseException: DOCTYPE is disallowed'
    const valid = XMLValidator.validate(xml)
    if (valid !== true) return `java.io.IOException: Failed to parse credential: ${valid.err.msg}`
    const doc = xmlParser.parse(xml) as Record<string, unknown>
    const roots = Object.keys(doc).filter((k) => k !== '#text')
    if (roots.length !== 1) return 'java.io.IOException: Failed to parse credential: expected one root element'
    const className = roots[0]!
    const type = KNOWN_TYPES[className]
    if (!type) return `com.thoughtworks.xstream.mapper.CannotResolveClassException: ${className}`
    const fields = doc[className]
    const plain: Record<string, string> = {}
    let secret = ''
    if (fields && typeof fields === 'object') {
      for (const [k, v] of Object.entries(fields as Record<string, unknown>)) {
        if (k === '#text') continue
        // A nested element where a Secret is expected (e.g. <secret-redacted/> posted back) yields
        // an empty secret, as XStream's Secret converter does: a real hazard the client must avoid.
        if (k === type.secretField) secret = typeof v === 'string' ? v : ''
        else if (typeof v === 'string') plain[k] = v
      }
    }
    const { scope, id, description, ...extra } = plain
    return { className, id: id && id.length > 0 ? id : randomUUID(), scope: scope ?? 'GLOBAL', description: description ?? '', secret, extra }
  }

  /** config.xml as Jenkins serves it: XStream output, secrets replaced by <secret-redacted/>. */
  function marshalRedacted(c: StoredCredential): string {
    const type = KNOWN_TYPES[c.className]!
    const fields: Record<string, unknown> = { '@_plugin': type.plugin, scope: c.scope, id: c.id, description: c.description }
    for (const [k, v] of Object.entries(c.extra)) fields[k] = v
    fields[type.secretField] = { 'secret-redacted': '' }
    return xmlBuilder.build({ [c.className]: fields }) as string
  }

  function handle(req: IncomingMessage, body: string, res: ServerResponse, rec: ReceivedRequest): void {
    if (fault && fault.left > 0) {
      const kind = fault.kind
      if (--fault.left === 0) fault = null
      rec.fault = kind
      return answerFault(kind, req, body, res, rec)
    }
    serve(req, body, res, rec)
  }

  function serveSafely(req: IncomingMessage, body: string, res: ServerResponse, rec: ReceivedRequest): void {
    try {
      serve(req, body, res, rec)
    } catch (err) {
      send(res, 500, jenkinsPage('Jenkins', 'Oops!', 'stand-in bug', String(err)))
    }
  }

  /** "Jenkins" proper: authentication, CSRF, routing, permissions, the store operations. */
  function serve(req: IncomingMessage, body: string, res: ServerResponse, rec: ReceivedRequest): void {
    const method = req.method ?? 'GET'
    const url = new URL(req.url ?? '/', 'http://standin')
    const uri = url.pathname

    const auth = authenticate(req)
    rec.auth = { kind: auth.kind, ...(auth.user !== undefined ? { user: auth.user } : {}) }
    if (auth.kind === 'invalid') {
      return send(res, 401, jettyError(401, `Invalid password/token for user: ${auth.user ?? ''}`, uri), undefined, { 'WWW-Authenticate': 'Basic realm="Jenkins"' })
    }
    if (auth.kind === 'anonymous') {
      // Anonymous lacks Overall/Read: Jenkins answers 403 with a page that redirects to the login.
      return send(
        res,
        403,
        `<html><head><meta http-equiv='refresh' content='1;url=/login?from=${encodeURIComponent(uri)}'/></head><body>\n\nAuthentication required\n\n</body></html>\n`,
        undefined,
        { 'X-You-Are-Authenticated-As': 'anonymous', 'X-Required-Permission': 'hudson.model.Hudson.Read' },
      )
    }
    const user = auth.u!

    if (!uri.startsWith(`${prefix}/`)) return send(res, 404, jettyError(404, 'Not Found', uri))
    const r = route(uri.slice(prefix.length))

    // CSRF protection (CrumbFilter): POSTs need a crumb unless authenticated by API token.
    if (method === 'POST' && auth.kind === 'password') {
      const sid = sessionOf(req)
      const session = sid ? sessions.get(sid) : undefined
      if (!session || session.user !== auth.user || req.headers['jenkins-crumb'] !== session.crumb) {
        return send(res, 403, jettyError(403, 'No valid crumb was included in the request', uri))
      }
    }

    if (r.kind === 'crumb') {
      if (method !== 'GET') return send(res, 405, jettyError(405, 'Method Not Allowed', uri))
      let sid = sessionOf(req)
      const headers: Record<string, string> = {}
      if (!sid) {
        sid = `node0${randomBytes(12).toString('hex')}.node0`
        sessions.set(sid, { crumb: randomBytes(32).toString('hex'), user: auth.user })
        headers['Set-Cookie'] = `${SESSION_COOKIE}=${sid}; Path=${prefix || '/'}; HttpOnly`
      }
      const crumb = sessions.get(sid)!.crumb
      return send(res, 200, JSON.stringify({ _class: 'hudson.security.csrf.DefaultCrumbIssuer', crumb, crumbRequestField: 'Jenkins-Crumb' }), 'application/json;charset=utf-8', headers)
    }
    if (r.kind === 'none') return send(res, 404, jettyError(404, 'Not Found', uri))

    // The store must exist and be visible to the user; otherwise Jenkins answers 404 as for a missing credential.
    const visible = r.folder === undefined ? user.system !== false : folders.has(r.folder) && (user.folders === undefined || user.folders.includes(r.folder))
    if (!visible || r.domain !== '_') return send(res, 404, jettyError(404, 'Not Found', uri))
    const store = storeOf(r.store)
    const denied = (perm: string): void => send(res, 403, jenkinsPage('Access Denied', 'Access Denied', `${auth.user} is missing the Credentials/${perm} permission`))

    if (r.rest === '' || r.rest === 'api/json') {
      if (r.rest === '') return send(res, 200, jenkinsPage('Global credentials (unrestricted)', 'Global credentials (unrestricted)', ''))
      const all = [...store.values()].map((c) => ({
        _class: 'com.cloudbees.plugins.credentials.CredentialsStoreAction$CredentialsWrapper',
        description: c.description,
        displayName: c.description ? `${c.description}` : c.id,
        fullName: `${r.store === 'system' ? 'system' : `${r.folder}/folder`}/_/${c.id}`,
        id: c.id,
        typeName: KNOWN_TYPES[c.className]!.typeName,
      }))
      // ?tree=credentials[a,b] keeps only those fields (a much reduced version of Jenkins' tree filter).
      const tree = /^credentials\[([^\]]*)\]$/.exec(url.searchParams.get('tree') ?? '')
      const keep = tree ? tree[1]!.split(',').map((s) => s.trim()) : undefined
      const list = keep ? all.map((c) => Object.fromEntries(Object.entries(c).filter(([k]) => keep.includes(k)))) : all
      const doc = { _class: 'com.cloudbees.plugins.credentials.CredentialsStoreAction$DomainWrapper', credentials: list }
      return send(res, 200, JSON.stringify(doc), 'application/json;charset=utf-8')
    }

    if (r.rest === 'createCredentials') {
      if (method !== 'POST') return send(res, 405, jettyError(405, 'Method Not Allowed', uri))
      if (user.readOnly) return denied('Create')
      const type = req.headers['content-type']
      if (!type) return send(res, 400, jenkinsPage('Error', 'Error', 'No Content-Type header set'))
      if (!type.startsWith('application/xml') && !type.startsWith('text/xml')) {
        return send(res, 400, jettyError(400, 'This page expects a form submission', uri))
      }
      const parsed = unmarshal(body)
      if (typeof parsed === 'string') return send(res, 500, jenkinsPage('Jenkins', 'Oops!', 'A problem occurred while processing the request.', parsed))
      if (r.folder !== undefined && parsed.scope !== 'GLOBAL') {
        return send(res, 500, jenkinsPage('Jenkins', 'Oops!', 'A problem occurred while processing the request.', `java.lang.IllegalArgumentException: scope ${parsed.scope} is not allowed in a folder store`))
      }
      if (store.has(parsed.id)) return send(res, 409)
      store.set(parsed.id, parsed)
      return send(res, 200)
    }

    const one = /^credential\/([^/]+)\/config\.xml$/.exec(r.rest)
    if (one) {
      const id = decodeURIComponent(one[1]!)
      const current = store.get(id)
      if (!current) return send(res, 404, jettyError(404, 'Not Found', uri))
      if (method === 'GET') return send(res, 200, marshalRedacted(current), 'application/xml;charset=utf-8')
      if (method === 'POST') {
        if (user.readOnly) return denied('Update')
        const parsed = unmarshal(body)
        if (typeof parsed === 'string') return send(res, 500, jenkinsPage('Jenkins', 'Oops!', 'A problem occurred while processing the request.', parsed))
        // The stores refuse to replace a credential by one with another id (IdCredentials equality).
        if (parsed.id !== current.id) {
          return send(res, 500, jenkinsPage('Jenkins', 'Oops!', 'A problem occurred while processing the request.', "java.lang.IllegalArgumentException: Credentials' IDs do not match, will not update."))
        }
        store.set(id, parsed)
        return send(res, 200)
      }
      if (method === 'DELETE') {
        if (user.readOnly) return denied('Delete')
        store.delete(id)
        return send(res, 200)
      }
      return send(res, 400, jettyError(400, 'Bad Request', uri))
    }
    return send(res, 404, jettyError(404, 'Not Found', uri))
  }

  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8')
      const { authorization: _omit, ...headers } = req.headers
      const rec: ReceivedRequest = { method: req.method ?? 'GET', path: req.url ?? '/', headers, body, auth: { kind: 'anonymous' } }
      received.push(rec)
      res.on('finish', () => {
        rec.status = res.statusCode
      })
      try {
        hook?.(rec)
        handle(req, body, res, rec)
      } catch (err) {
        send(res, 500, jenkinsPage('Jenkins', 'Oops!', 'stand-in bug', String(err)))
      }
    })
  })
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.listen?.port ?? 0, opts.listen?.host ?? '127.0.0.1', () => resolve())
  })
  const { port } = server.address() as AddressInfo

  return {
    url: `http://${opts.listen?.host ?? '127.0.0.1'}:${port}${prefix}`,
    received,
    credentials,
    secretOf: (store, id) => credentials.get(store)?.get(id)?.secret,
    setFault(kind, count = 1) {
      fault = kind === null || count <= 0 ? null : { kind, left: count }
    },
    onRequest(fn) {
      hook = fn
    },
    dropSessions() {
      sessions.clear()
    },
    async stop() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      hanging.clear()
      for (const t of timers) clearTimeout(t)
      timers.clear()
      for (const s of sockets) s.destroy()
      server.closeAllConnections()
      await closed
    },
  }
}
