// labctl's Jenkins credentials client against the Jenkins stand-in (test/standins/jenkins.ts).
import { randomBytes } from 'node:crypto'
import { createServer as createHttpServer, type Server } from 'node:http'
import { createServer } from 'node:net'
import { inspect } from 'node:util'
import { afterEach, describe, expect, it } from 'vitest'
import { LabctlError } from '../../src/errors.js'
import {
  credentialExists,
  listCredentials,
  redactSecrets,
  secretTextXml,
  updateSecretText,
  type JenkinsConnection,
  type UpdateSecretTextOptions,
} from '../../src/jenkins/client.js'
import { httpRequest } from '../../src/net/http.js'
import { STRING_CREDENTIALS, USERNAME_PASSWORD_CREDENTIALS, startJenkinsStandin, type JenkinsStandin, type StandinOptions } from '../standins/jenkins.js'

const ALICE_TOKEN = `11aa${randomBytes(14).toString('hex')}`
const ALICE_PASSWORD = `alice-pw-${randomBytes(6).toString('hex')}`
/** Characters that need escaping in XML, HTML, JSON and URLs, plus a random part to search for. */
const SECRET = `s3cr3t<&>"'-${randomBytes(8).toString('hex')}`
const ID = 'trivy-server-token'

const standins: JenkinsStandin[] = []
afterEach(async () => {
  await Promise.all(standins.splice(0).map((s) => s.stop()))
})

async function start(extra: Partial<StandinOptions> = {}): Promise<JenkinsStandin> {
  const s = await startJenkinsStandin({
    users: [
      { name: 'alice', apiToken: ALICE_TOKEN, password: ALICE_PASSWORD },
      { name: 'bob', apiToken: 'bob-token', folders: ['team-b'] },
      { name: 'carol', apiToken: 'carol-token', readOnly: true },
    ],
    folders: ['team-a/scanners', 'team-b'],
    credentials: [
      { store: 'system', id: ID, secret: 'old-secret', description: 'Trivy server token' },
      { store: 'folder:team-a/scanners', id: ID, secret: 'old-folder-secret', description: 'folder copy' },
      { store: 'system', id: 'deploy-login', secret: 'pw', className: USERNAME_PASSWORD_CREDENTIALS, extra: { username: 'deploy' } },
    ],
    ...extra,
  })
  standins.push(s)
  return s
}

function opts(s: JenkinsStandin, over: Partial<UpdateSecretTextOptions> = {}): UpdateSecretTextOptions {
  return { url: s.url, store: 'system', credentialId: ID, user: 'alice', apiToken: ALICE_TOKEN, secret: SECRET, timeoutMs: 5000, ...over }
}

/** The rejection of `p`, which must be a LabctlError. */
async function failureOf(p: Promise<unknown>): Promise<LabctlError> {
  try {
    await p
  } catch (err) {
    if (err instanceof LabctlError) return err
    throw err
  }
  throw new Error('expected a LabctlError, but the call succeeded')
}

/** Raw Basic auth header for requests made without the client. */
const basic = (user: string, pass: string): string => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`

describe('jenkins client: updating and creating', () => {
  it('updates an existing secret text in the system store with one preemptive API-token request per step', async () => {
    const s = await start()
    const r = await updateSecretText(opts(s))
    expect(r).toMatchObject({ action: 'updated', store: 'system', credentialId: ID, scope: 'GLOBAL', description: 'Trivy server token', requests: 2 })
    expect(r.credentialUrl).toBe(`${s.url}/credentials/store/system/domain/_/credential/${ID}/config.xml`)
    expect(s.secretOf('system', ID)).toBe(SECRET)
    // Description and scope kept; nothing else touched.
    expect(s.credentials.get('system')?.get(ID)).toMatchObject({ className: STRING_CREDENTIALS, scope: 'GLOBAL', description: 'Trivy server token' })
    expect(s.secretOf('folder:team-a/scanners', ID)).toBe('old-folder-secret')
    // Every request authenticated up front by token: no 401 round trip, no crumb.
    expect(s.received.map((q) => [q.method, q.auth.kind, q.status])).toEqual([
      ['GET', 'token', 200],
      ['POST', 'token', 200],
    ])
    expect(s.received.some((q) => q.path.startsWith('/crumbIssuer'))).toBe(false)
    expect(s.received[1]?.headers['content-type']).toMatch(/^application\/xml/)
    // The result carries no secret.
    expect(JSON.stringify(r)).not.toContain(SECRET)
  })

  it('sends the secret and the description byte for byte, however they need escaping', async () => {
    const s = await start()
    const secret = ` lead\ttab\r\nCRLF\nLF ]]> &amp; é 😀 ${SECRET} `
    const description = 'Trivy <token> & "friends"'
    const r = await updateSecretText(opts(s, { secret, description }))
    expect(r.description).toBe(description)
    expect(s.secretOf('system', ID)).toBe(secret)
    expect(s.credentials.get('system')?.get(ID)?.description).toBe(description)
    const xml = secretTextXml({ scope: 'GLOBAL', id: 'x', description: 'd', secret: 'a<b&c\r' })
    expect(xml).toContain('<secret>a&lt;b&amp;c&#13;</secret>')
  })

  it('fails with a clear 404 and creates nothing when the credential is missing and create is not set', async () => {
    const s = await start()
    const err = await failureOf(updateSecretText(opts(s, { credentialId: 'new-token' })))
    expect(err.code).toBe('JENKINS_CREDENTIAL_NOT_FOUND')
    expect(err.message).toBe('credential new-token does not exist in the system store (404)')
    expect(err.suggestion).toContain('--create')
    expect(s.secretOf('system', 'new-token')).toBeUndefined()
    expect(s.received.filter((q) => q.method === 'POST')).toEqual([])
  })

  it('creates the credential (scope GLOBAL) when create is set', async () => {
    const s = await start()
    const r = await updateSecretText(opts(s, { credentialId: 'new-token', create: true, description: 'made by labctl' }))
    expect(r).toMatchObject({ action: 'created', scope: 'GLOBAL', description: 'made by labctl' })
    expect(s.credentials.get('system')?.get('new-token')).toMatchObject({ className: STRING_CREDENTIALS, scope: 'GLOBAL', secret: SECRET, description: 'made by labctl' })
    const create = s.received.find((q) => q.path.endsWith('/createCredentials'))
    expect(create).toMatchObject({ method: 'POST', path: '/credentials/store/system/domain/_/createCredentials', status: 200 })
    // With create set, an existing credential is simply updated.
    const again = await updateSecretText(opts(s, { credentialId: 'new-token', create: true, secret: 'second' }))
    expect(again.action).toBe('updated')
    expect(s.secretOf('system', 'new-token')).toBe('second')
  })

  it('reports 409 when the credential appears between the check and the create', async () => {
    const s = await start()
    // Someone else creates it while labctl is between its GET (404) and its POST.
    s.onRequest((q) => {
      if (q.path.endsWith('/createCredentials')) {
        s.credentials.get('system')!.set('racy', { className: STRING_CREDENTIALS, id: 'racy', scope: 'GLOBAL', description: '', secret: 'theirs', extra: {} })
      }
    })
    const err = await failureOf(updateSecretText(opts(s, { credentialId: 'racy', create: true })))
    expect(err.code).toBe('JENKINS_CONFLICT')
    expect(err.message).toBe('credential racy already exists in the system store (409)')
    expect(err.suggestion).toMatch(/without --create/)
    expect(s.received.at(-1)?.status).toBe(409)
    expect(s.secretOf('system', 'racy')).toBe('theirs')
  })

  it('updates and creates in a nested folder store', async () => {
    const s = await start()
    const r = await updateSecretText(opts(s, { store: 'folder:team-a/scanners' }))
    expect(r.action).toBe('updated')
    expect(s.secretOf('folder:team-a/scanners', ID)).toBe(SECRET)
    expect(s.secretOf('system', ID)).toBe('old-secret')
    expect(s.received.at(-1)?.path).toBe(`/job/team-a/job/scanners/credentials/store/folder/domain/_/credential/${ID}/config.xml`)

    const c = await updateSecretText(opts(s, { store: 'folder:team-b', credentialId: 'other', create: true }))
    expect(c.action).toBe('created')
    expect(s.secretOf('folder:team-b', 'other')).toBe(SECRET)
  })

  it('tells a missing or invisible folder store apart from a missing credential', async () => {
    const s = await start()
    const missing = await failureOf(updateSecretText(opts(s, { store: 'folder:no/such', create: true })))
    expect(missing.code).toBe('JENKINS_STORE_NOT_FOUND')
    expect(missing.message).toBe('Jenkins has no folder no/such, or user alice may not view its credentials (404)')
    // bob may see team-b only: team-a's store is a 404 for him, as in Jenkins.
    const hidden = await failureOf(updateSecretText(opts(s, { store: 'folder:team-a/scanners', user: 'bob', apiToken: 'bob-token' })))
    expect(hidden.code).toBe('JENKINS_STORE_NOT_FOUND')
    expect(hidden.message).toContain('user bob may not view')
    expect(s.secretOf('folder:team-a/scanners', ID)).toBe('old-folder-secret')
  })

  it('works when Jenkins runs under a context path', async () => {
    const s = await start({ prefix: '/jenkins' })
    const r = await updateSecretText(opts(s, { url: `${s.url}/` }))
    expect(r.action).toBe('updated')
    expect(s.received[0]?.path).toBe(`/jenkins/credentials/store/system/domain/_/credential/${ID}/config.xml`)
    expect(s.secretOf('system', ID)).toBe(SECRET)
  })

  it('refuses to turn a credential of another type into secret text', async () => {
    const s = await start()
    const err = await failureOf(updateSecretText(opts(s, { credentialId: 'deploy-login' })))
    expect(err.code).toBe('JENKINS_WRONG_TYPE')
    expect(err.message).toBe('credential deploy-login in the system store is of type UsernamePasswordCredentialsImpl, not "Secret text"')
    expect(s.credentials.get('system')?.get('deploy-login')).toMatchObject({ className: USERNAME_PASSWORD_CREDENTIALS, secret: 'pw' })
  })
})

describe('jenkins client: authentication', () => {
  it('maps a wrong API token to 401 with the user named and no secret or token in the error', async () => {
    const s = await start()
    const wrong = `wrong-${randomBytes(8).toString('hex')}`
    const err = await failureOf(updateSecretText(opts(s, { apiToken: wrong })))
    expect(err.code).toBe('JENKINS_AUTH')
    expect(err.message).toBe("Jenkins rejected user alice's API token (401)")
    expect(err.suggestion).toContain(`${s.url}/user/alice/configure`)
    const all = `${err.message}\n${err.stack}\n${err.suggestion}\n${JSON.stringify(err)}`
    expect(all).not.toContain(SECRET)
    expect(all).not.toContain(wrong)
    expect(s.received[0]).toMatchObject({ status: 401, auth: { kind: 'invalid', user: 'alice' } })
    expect(s.secretOf('system', ID)).toBe('old-secret')
    // A wrong password is named as such.
    const pw = await failureOf(updateSecretText(opts(s, { apiToken: undefined, password: 'nope' })))
    expect(pw.message).toBe("Jenkins rejected user alice's password (401)")
  })

  it('maps 403 for no credentials and for a missing permission', async () => {
    const s = await start()
    const anon = await failureOf(updateSecretText(opts(s, { apiToken: undefined })))
    expect(anon.code).toBe('JENKINS_FORBIDDEN')
    expect(anon.message).toMatch(/refused anonymous access \(403\): no credentials were sent/)
    expect(s.received[0]).toMatchObject({ status: 403, auth: { kind: 'anonymous' } })
    expect(s.received[0]?.headers.authorization).toBeUndefined()

    const ro = await failureOf(updateSecretText(opts(s, { user: 'carol', apiToken: 'carol-token' })))
    expect(ro.code).toBe('JENKINS_FORBIDDEN')
    expect(ro.message).toBe('Jenkins user carol lacks the Credentials/Update permission on the system store (403)')
    expect(ro.suggestion).toContain('carol')
    expect(s.secretOf('system', ID)).toBe('old-secret')
  })

  it('with a password, fetches a crumb and sends it back with the session cookie', async () => {
    const s = await start()
    const r = await updateSecretText(opts(s, { apiToken: undefined, password: ALICE_PASSWORD }))
    expect(r.action).toBe('updated')
    expect(s.secretOf('system', ID)).toBe(SECRET)
    expect(s.received.map((q) => `${q.method} ${q.path.split('?')[0]} ${q.auth.kind} ${q.status}`)).toEqual([
      'GET /crumbIssuer/api/json password 200',
      `GET /credentials/store/system/domain/_/credential/${ID}/config.xml password 200`,
      `POST /credentials/store/system/domain/_/credential/${ID}/config.xml password 200`,
    ])
    const post = s.received[2]!
    expect(post.headers['jenkins-crumb']).toMatch(/^[0-9a-f]{64}$/)
    expect(post.headers.cookie).toMatch(/^JSESSIONID\.[0-9a-f]+=node0/)
  })

  it('the stand-in refuses a password POST without a valid crumb, and accepts an API-token POST without one', async () => {
    const s = await start()
    const url = `${s.url}/credentials/store/system/domain/_/credential/${ID}/config.xml`
    const xml = secretTextXml({ scope: 'GLOBAL', id: ID, description: '', secret: 'raw' })
    const post = (auth: string, extra: Record<string, string> = {}) =>
      httpRequest(url, { method: 'POST', headers: { Authorization: auth, 'Content-Type': 'application/xml', ...extra }, body: xml, timeoutMs: 2000 })

    const noCrumb = await post(basic('alice', ALICE_PASSWORD))
    expect(noCrumb.status).toBe(403)
    expect(noCrumb.body).toContain('No valid crumb was included in the request')
    // A crumb without the session it was issued in is no good either.
    const issued = await httpRequest(`${s.url}/crumbIssuer/api/json`, { headers: { Authorization: basic('alice', ALICE_PASSWORD) }, timeoutMs: 2000 })
    const { crumb, crumbRequestField } = JSON.parse(issued.body) as { crumb: string; crumbRequestField: string }
    expect(crumbRequestField).toBe('Jenkins-Crumb')
    expect((await post(basic('alice', ALICE_PASSWORD), { 'Jenkins-Crumb': crumb })).status).toBe(403)
    const cookie = String(issued.headers['set-cookie']).split(';')[0]!
    expect((await post(basic('alice', ALICE_PASSWORD), { 'Jenkins-Crumb': crumb, Cookie: cookie })).status).toBe(200)
    expect(s.secretOf('system', ID)).toBe('raw')

    const byToken = await post(basic('alice', ALICE_TOKEN))
    expect(byToken.status).toBe(200)
  })

  it('maps a crumb refusal to a clear 403', async () => {
    const s = await start()
    // The session expires between the crumb and the POST (a Jenkins restart, a proxy dropping the cookie).
    s.onRequest((q) => {
      if (q.method === 'POST') s.dropSessions()
    })
    const err = await failureOf(updateSecretText(opts(s, { apiToken: undefined, password: ALICE_PASSWORD })))
    expect(err.code).toBe('JENKINS_CRUMB')
    expect(err.message).toBe(`Jenkins refused updating credential ${ID} in the system store: no valid CSRF crumb (403)`)
    expect(err.suggestion).toMatch(/API token/)
    expect(s.received.at(-1)).toMatchObject({ method: 'POST', status: 403 })
    expect(s.secretOf('system', ID)).toBe('old-secret')
  })
})

describe('jenkins client: server trouble', () => {
  it('maps a 500 to a server error with the page summarized', async () => {
    const s = await start()
    s.setFault('500')
    const err = await failureOf(updateSecretText(opts(s)))
    expect(err.code).toBe('JENKINS_SERVER_ERROR')
    expect(err.message).toBe(`Jenkins failed (500) while reading credential ${ID} in the system store: Oops!: A problem occurred while processing the request.`)
    expect(err.suggestion).toMatch(/system log/i)
    expect(s.secretOf('system', ID)).toBe('old-secret')
  })

  it('times out within the budget when Jenkins never answers', async () => {
    const s = await start()
    s.setFault('hang')
    const t0 = performance.now()
    const err = await failureOf(updateSecretText(opts(s, { timeoutMs: 400 })))
    const took = performance.now() - t0
    expect(err.code).toBe('JENKINS_TIMEOUT')
    expect(err.message).toBe(`Jenkins at ${new URL(s.url).host} did not answer within 400 ms (reading credential ${ID} in the system store)`)
    expect(took).toBeGreaterThanOrEqual(350)
    expect(took).toBeLessThan(1000)
  })

  it('counts the timeout for the whole operation, not per request', async () => {
    const s = await start({ slowMs: 500 })
    // The GET is answered after 500 ms (a slow Jenkins), then the POST hangs: with an 800 ms budget the
    // POST gets only the ~300 ms left, so the whole call ends near 800 ms (per-request timeouts: ~1300).
    s.setFault('slow')
    s.onRequest((q) => {
      if (q.method === 'POST') s.setFault('hang')
    })
    const t0 = performance.now()
    const err = await failureOf(updateSecretText(opts(s, { timeoutMs: 800 })))
    const took = performance.now() - t0
    expect(s.received.map((q) => q.fault)).toEqual(['slow', 'hang'])
    expect(err.code).toBe('JENKINS_TIMEOUT')
    expect(err.message).toContain(`within 800 ms (updating credential ${ID}`)
    expect(took).toBeGreaterThanOrEqual(750)
    expect(took).toBeLessThan(1100)
  })

  it('reports an HTML page where XML was expected (a login page in front of Jenkins)', async () => {
    const s = await start()
    s.setFault('html')
    const err = await failureOf(updateSecretText(opts(s)))
    expect(err.code).toBe('JENKINS_BAD_RESPONSE')
    expect(err.message).toBe(`Jenkins at ${new URL(s.url).host} answered with an HTML page ("Sign in - Lab SSO") where XML was expected while reading credential ${ID} in the system store`)
    expect(err.suggestion).toMatch(/login page or proxy/)
    // An HTML page in answer to the POST is not taken for success either.
    s.onRequest((q) => {
      if (q.method === 'POST') s.setFault('html')
    })
    const post = await failureOf(updateSecretText(opts(s)))
    expect(post.message).toContain('where an empty answer was expected while updating')
  })

  it('reports a connection refused', async () => {
    const port = await new Promise<number>((resolve) => {
      const srv = createServer()
      srv.listen(0, '127.0.0.1', () => {
        const p = (srv.address() as { port: number }).port
        srv.close(() => resolve(p))
      })
    })
    const err = await failureOf(updateSecretText({ url: `http://127.0.0.1:${port}/`, store: 'system', credentialId: ID, user: 'alice', apiToken: ALICE_TOKEN, secret: SECRET, timeoutMs: 2000 }))
    expect(err.code).toBe('JENKINS_UNREACHABLE')
    expect(err.message).toBe(`cannot reach Jenkins at 127.0.0.1:${port}: connection refused (nothing listens on the port: service down)`)
  })

  it('rejects bad input as usage errors (exit 2) without echoing credentials', async () => {
    const s = await start()
    const cases: Array<[Partial<UpdateSecretTextOptions>, RegExp]> = [
      [{ store: 'folder:' as 'system' }, /bad Jenkins credentials store/],
      [{ store: 'team-a' as 'system' }, /bad Jenkins credentials store/],
      [{ credentialId: 'a b/c' }, /bad Jenkins credential id/],
      // Dot-segments: credential/../config.xml would be the domain's own config.xml.
      [{ credentialId: '..' }, /bad Jenkins credential id/],
      [{ credentialId: '.' }, /bad Jenkins credential id/],
      [{ description: 'tab ok\t, bell not\u0007' }, /description contains control characters/],
      [{ password: ALICE_PASSWORD }, /either a Jenkins API token or a password/],
      [{ url: `http://alice:${ALICE_TOKEN}@127.0.0.1:1/` }, /must not contain a user or password/],
      [{ secret: '  \n' }, /the secret is empty/],
      [{ secret: 'bell\u0007' }, /control characters/],
      [{ caFile: '/nonexistent/ca.pem' }, /cannot read the CA file: .*\/nonexistent\/ca.pem: no such file/],
      [{ url: `http//alice:${ALICE_TOKEN}@jenkins` }, /bad Jenkins URL "http\/\/\[REDACTED\]@jenkins"/],
    ]
    for (const [over, re] of cases) {
      const err = await failureOf(updateSecretText(opts(s, over)))
      expect(err.message).toMatch(re)
      expect(err.exitCode).toBe(2)
      expect(`${err.message} ${err.stack}`).not.toContain(ALICE_TOKEN)
      expect(`${err.message} ${err.stack}`).not.toContain(ALICE_PASSWORD)
    }
    expect(s.received).toEqual([])
  })
})

/** A bare HTTP server answering `answer(path)` → [status, content type, body]: not Jenkins, for answers the stand-in never gives. */
async function rawServer(answer: (path: string) => [number, string, string]): Promise<{ url: string; paths: string[] }> {
  const paths: string[] = []
  const srv: Server = createHttpServer((req, res) => {
    paths.push(req.url ?? '')
    const [status, type, body] = answer(req.url ?? '')
    res.writeHead(status, { 'Content-Type': type }).end(body)
  })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  standins.push({ stop: () => new Promise<void>((resolve) => srv.close(() => resolve())) } as JenkinsStandin)
  return { url: `http://127.0.0.1:${(srv.address() as { port: number }).port}/`, paths }
}

describe('jenkins client: answers the stand-in never gives (JSON of the wrong shape, an empty text/html 200)', () => {
  it('maps JSON that is not the expected object (null, an array, a list of nulls) to a bad response, not a crash', async () => {
    for (const body of ['null', '[]', '"text"', '{"credentials":[null]}', '{"credentials":{}}']) {
      const srv = await rawServer(() => [200, 'application/json', body])
      const err = await failureOf(listCredentials({ url: srv.url, user: 'alice', apiToken: ALICE_TOKEN, timeoutMs: 2000, store: 'system' }))
      expect(err.code, body).toBe('JENKINS_BAD_RESPONSE')
      expect(err.message, body).toMatch(/did not answer with (JSON|a credentials list) while listing the system store/)
    }
  })

  it('takes an empty 200 labelled text/html for the success it is (only a page with content is a login page)', async () => {
    const xml = secretTextXml({ scope: 'GLOBAL', id: ID, description: 'd', secret: 'x' }).replace('<secret>x</secret>', '<secret><secret-redacted/></secret>')
    const srv = await rawServer((path) => (path.endsWith('/config.xml') && srv.paths.length === 1 ? [200, 'application/xml', xml] : [200, 'text/html;charset=utf-8', '']))
    const r = await updateSecretText(opts({ url: srv.url } as JenkinsStandin))
    expect(r).toMatchObject({ action: 'updated', scope: 'GLOBAL', description: 'd', requests: 2 })
    expect(srv.paths).toEqual([`/credentials/store/system/domain/_/credential/${ID}/config.xml`, `/credentials/store/system/domain/_/credential/${ID}/config.xml`])
  })

  it('reads config.xml as Jenkins writes it: XML 1.1 declaration, plugin attribute, redacted secret', async () => {
    const xml = `<?xml version='1.1' encoding='UTF-8'?>\n<${STRING_CREDENTIALS} plugin="plain-credentials@183.va_de8f1dd5a_2b_">\n  <scope>SYSTEM</scope>\n  <id>${ID}</id>\n  <description>a &amp; b</description>\n  <secret>\n    <secret-redacted/>\n  </secret>\n</${STRING_CREDENTIALS}>`
    const posted: string[] = []
    const srv = await rawServer((path) => {
      if (srv.paths.length === 1) return [200, 'application/xml;charset=utf-8', xml]
      posted.push(path)
      return [200, 'text/plain', '']
    })
    const r = await updateSecretText(opts({ url: srv.url } as JenkinsStandin))
    // The scope (SYSTEM, allowed in the system store) and the description are kept as Jenkins has them.
    expect(r).toMatchObject({ action: 'updated', scope: 'SYSTEM', description: 'a & b' })
    expect(posted).toEqual([`/credentials/store/system/domain/_/credential/${ID}/config.xml`])
  })

  it('names anonymous requests, not an empty user, when a store is a 404 without credentials', async () => {
    const srv = await rawServer(() => [404, 'text/html', '<html><title>Error 404 Not Found</title></html>'])
    const err = await failureOf(credentialExists({ url: srv.url, user: '', timeoutMs: 2000, store: 'folder:team-a', credentialId: ID }))
    expect(err.code).toBe('JENKINS_STORE_NOT_FOUND')
    expect(err.message).toBe('Jenkins has no folder team-a, or anonymous requests may not view its credentials (404)')
    expect(err.suggestion).toMatch(/a Jenkins user and API token are given/)
  })

  it('refuses a crumb that is null or whose field cannot be an HTTP header, before any POST', async () => {
    for (const body of ['null', '{"crumb":"abc","crumbRequestField":"Jenkins Crumb\\r\\nX-Evil: 1"}', '{"crumb":"a\\nb","crumbRequestField":"Jenkins-Crumb"}']) {
      const srv = await rawServer((path) => (path.startsWith('/crumbIssuer/') ? [200, 'application/json', body] : [404, 'text/html', '<html><title>Not Found</title></html>']))
      const err = await failureOf(updateSecretText({ ...opts({ url: srv.url } as JenkinsStandin), apiToken: undefined, password: ALICE_PASSWORD }))
      expect(err.code, body).toBe('JENKINS_BAD_RESPONSE')
      expect(err.message, body).toMatch(/did not answer with (JSON|a crumb) while fetching a CSRF crumb/)
      expect(srv.paths).toEqual(['/crumbIssuer/api/json'])
      expect(`${err.message} ${err.stack}`).not.toContain(ALICE_PASSWORD)
    }
  })
})

describe('jenkins client: existence and listing', () => {
  it('credentialExists answers true, false, or fails for a missing store', async () => {
    const s = await start()
    const conn: JenkinsConnection = { url: s.url, user: 'alice', apiToken: ALICE_TOKEN, timeoutMs: 2000 }
    expect(await credentialExists({ ...conn, store: 'system', credentialId: ID })).toBe(true)
    expect(await credentialExists({ ...conn, store: 'system', credentialId: 'nope' })).toBe(false)
    expect(await credentialExists({ ...conn, store: 'folder:team-a/scanners', credentialId: ID })).toBe(true)
    const err = await failureOf(credentialExists({ ...conn, store: 'folder:ghost', credentialId: ID }))
    expect(err.code).toBe('JENKINS_STORE_NOT_FOUND')
    // Reading needs no crumb even with a password.
    expect(await credentialExists({ ...conn, apiToken: undefined, password: ALICE_PASSWORD, store: 'system', credentialId: ID })).toBe(true)
    expect(s.received.some((q) => q.path.startsWith('/crumbIssuer'))).toBe(false)
  })

  it('listCredentials returns id, type and description from api/json', async () => {
    const s = await start()
    const list = await listCredentials({ url: s.url, user: 'alice', apiToken: ALICE_TOKEN, timeoutMs: 2000, store: 'system' })
    expect(list).toEqual([
      { id: ID, typeName: 'Secret text', description: 'Trivy server token' },
      { id: 'deploy-login', typeName: 'Username with password', description: '' },
    ])
    expect(s.received[0]?.path).toBe('/credentials/store/system/domain/_/api/json?tree=credentials%5Bid%2CtypeName%2Cdescription%5D')
  })
})

describe('jenkins stand-in', () => {
  it('answers like the credentials plugin: redacted config.xml, 409, 500 on bad XML, delete, api/json tree', async () => {
    const s = await start()
    const auth = { Authorization: basic('alice', ALICE_TOKEN) }
    const base = `${s.url}/manage/credentials/store/system/domain/_`
    const get = await httpRequest(`${base}/credential/${ID}/config.xml`, { headers: auth, timeoutMs: 2000 })
    expect(get.status).toBe(200)
    expect(get.body).toMatch(/<secret>\s*<secret-redacted\/>\s*<\/secret>/)
    expect(get.body).not.toContain('old-secret')
    const create = (body: string) => httpRequest(`${base}/createCredentials`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/xml' }, body, timeoutMs: 2000 })
    expect((await create(secretTextXml({ scope: 'GLOBAL', id: ID, description: '', secret: 'x' }))).status).toBe(409)
    expect((await create('<org.jenkinsci.plugins.plaincredentials.impl.StringCredentialsImpl><id>')).status).toBe(500)
    const del = await httpRequest(`${base}/credential/${ID}/config.xml`, { method: 'DELETE', headers: auth, timeoutMs: 2000 })
    expect(del.status).toBe(200)
    expect((await httpRequest(`${base}/credential/${ID}/config.xml`, { headers: auth, timeoutMs: 2000 })).status).toBe(404)
    const list = await httpRequest(`${base}/api/json?tree=credentials[id]`, { headers: auth, timeoutMs: 2000 })
    expect(JSON.parse(list.body)).toMatchObject({ credentials: [{ id: 'deploy-login' }] })
    expect(JSON.parse(list.body).credentials[0]).toEqual({ id: 'deploy-login' })
    const wrong = await httpRequest(`${base}/api/json`, { headers: { Authorization: basic('alice', 'bad') }, timeoutMs: 2000 })
    expect(wrong.status).toBe(401)
    expect(wrong.headers['www-authenticate']).toBe('Basic realm="Jenkins"')
    expect(s.received.every((q) => q.headers.authorization === undefined)).toBe(true)
  })
})

describe('jenkins client: the secret never leaks', () => {
  it('redactSecrets removes raw, escaped and encoded spellings', () => {
    const echoed = `a ${SECRET} b ${SECRET.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;')} c ${encodeURIComponent(SECRET)} d ${JSON.stringify(SECRET)}`
    const out = redactSecrets(echoed, [SECRET])
    expect(out).not.toContain(SECRET.slice(-16))
    expect(out).toBe('a [REDACTED] b [REDACTED] c [REDACTED] d "[REDACTED]"')
  })

  it('keeps the secret, token and password out of every error, even when Jenkins echoes the request', async () => {
    const s = await start()
    const secret = `${SECRET}\nline-two`
    const sensitive = [secret, SECRET, SECRET.slice(-16), ALICE_TOKEN, ALICE_PASSWORD, basic('alice', ALICE_TOKEN).slice(6), basic('alice', ALICE_PASSWORD).slice(6)]
    const errors: LabctlError[] = []
    const run = async (over: Partial<UpdateSecretTextOptions>, before?: () => void): Promise<void> => {
      before?.()
      errors.push(await failureOf(updateSecretText(opts(s, { secret, ...over }))))
      s.setFault(null)
      s.onRequest(null)
    }
    // Jenkins echoes the posted XML (secret included) into its error page on the POST.
    await run({}, () => s.onRequest((q) => (q.method === 'POST' ? s.setFault('echo500') : undefined)))
    expect(s.received.at(-1)?.body).toContain('line-two') // the echo really carried the secret
    expect(errors[0]?.message).toContain('[REDACTED]')
    await run({}, () => s.setFault('500'))
    await run({}, () => s.setFault('401'))
    await run({}, () => s.setFault('html'))
    await run({ timeoutMs: 300 }, () => s.setFault('hang'))
    await run({ apiToken: 'wrong' })
    await run({ apiToken: undefined, password: ALICE_PASSWORD }, () => s.onRequest((q) => (q.method === 'POST' ? s.setFault('echo500') : undefined)))
    await run({ user: 'carol', apiToken: 'carol-token' })
    await run({ credentialId: 'missing' })
    await run({ credentialId: 'deploy-login' })
    await run({ store: 'folder:ghost', create: true })
    expect(errors).toHaveLength(11)
    for (const err of errors) {
      const everything = [err.message, err.stack, err.suggestion, err.details.join('\n'), JSON.stringify(err), inspect(err, { depth: 10 }), String(err.cause)].join('\n')
      for (const value of sensitive) expect(everything, err.message).not.toContain(value)
    }
  })
})
