// A small Trivy server stand-in on loopback for the exporter's unit tests: the endpoints the probes use
// (/healthz, /version, the Twirp cache and scanner calls), a Scan counter, and hostile modes.
import { createServer as createHttp, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttps } from 'node:https'
import type { AddressInfo, Socket } from 'node:net'

export type FakeMode =
  /** Behaves like a healthy Trivy server with the token. */
  | 'ok'
  /** Accepts connections and never answers. */
  | 'hang'
  /** Scans are accepted without a token (the token check is off). */
  | 'open'
  /** Echoes the token it was sent in every error, and answers /version with non-JSON that contains it. */
  | 'echo-token'
  /** Rejects the real token as well (a wrong token on the server). */
  | 'wrong-token'

export type FakeTrivy = {
  url: string
  port: number
  /** Scan calls that carried the right token (i.e. canaries that reached the scanner). */
  scans: number
  /** Every request seen, by path. */
  requests: Map<string, number>
  mode: FakeMode
  close: () => Promise<void>
}

export async function startFakeTrivy(opts: { token: string; header?: string; mode?: FakeMode; tls?: { certPem: string; keyPem: string }; version?: string; updatedAt?: string }): Promise<FakeTrivy> {
  const header = (opts.header ?? 'Trivy-Token').toLowerCase()
  const sockets = new Set<Socket>()
  const fake: FakeTrivy = { url: '', port: 0, scans: 0, requests: new Map(), mode: opts.mode ?? 'ok', close: async () => undefined }
  const json = (res: ServerResponse, code: number, body: unknown): void => {
    const text = JSON.stringify(body)
    res.writeHead(code, { 'content-type': 'application/json' })
    res.end(text)
  }
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?')[0]!
    fake.requests.set(path, (fake.requests.get(path) ?? 0) + 1)
    if (fake.mode === 'hang') return // never answer
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const sent = req.headers[header]
      const given = typeof sent === 'string' ? sent : undefined
      if (path === '/healthz') return void res.end('ok')
      if (path === '/version') {
        // Over plain HTTP: valid JSON whose Version carries the token and a line break; over TLS: not JSON at all.
        if (fake.mode === 'echo-token' && !opts.tls) return json(res, 200, { Version: `0.74.0\n"${opts.token}` })
        if (fake.mode === 'echo-token') {
          res.writeHead(200, { 'content-type': 'text/plain' })
          return void res.end(`proxy says: your token is ${opts.token} (debug)`)
        }
        return json(res, 200, { Version: opts.version ?? '0.74.0', VulnerabilityDB: { Version: 2, UpdatedAt: opts.updatedAt ?? new Date(Date.now() - 3600_000).toISOString(), NextUpdate: new Date(Date.now() + 3600_000).toISOString() } })
      }
      if (!path.startsWith('/twirp/')) return json(res, 404, { code: 'bad_route', msg: 'no handler' })
      const authorized = fake.mode === 'open' || (fake.mode !== 'wrong-token' && given === opts.token)
      if (!authorized) {
        if (fake.mode === 'echo-token') return json(res, 401, { code: 'unauthenticated', msg: `invalid token ${given ?? ''} (expected ${opts.token})` })
        return json(res, 401, { code: 'unauthenticated', msg: 'invalid token' })
      }
      if (fake.mode === 'echo-token') return json(res, 500, { code: 'internal', msg: `boom with ${opts.token}` })
      if (path === '/twirp/trivy.scanner.v1.Scanner/Scan') {
        if (given === opts.token) fake.scans += 1
        return json(res, 200, {
          os: { family: 'alpine', name: '3.10.2' },
          results: [
            {
              target: 'labctl-canary',
              vulnerabilities: [
                { vulnerability_id: 'CVE-2019-1549', pkg_name: 'openssl', severity: 'MEDIUM' },
                { vulnerability_id: 'CVE-2020-1967', pkg_name: 'openssl', severity: 'HIGH' },
              ],
            },
          ],
        })
      }
      return json(res, 200, {})
    })
  }
  const server: Server = opts.tls ? createHttps({ cert: opts.tls.certPem, key: opts.tls.keyPem }, handler) : createHttp(handler)
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  fake.port = (server.address() as AddressInfo).port
  fake.url = `${opts.tls ? 'https' : 'http'}://${opts.tls ? 'localhost' : '127.0.0.1'}:${fake.port}`
  fake.close = () =>
    new Promise<void>((r) => {
      for (const s of sockets) s.destroy()
      server.close(() => r())
    })
  return fake
}
