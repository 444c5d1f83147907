// A loopback stand-in for a registry's auth front: it demands a Bearer token from its own token endpoint
// (which checks basic credentials), or basic credentials directly, and passes authorized requests to a
// real docker-registry behind it. Only the auth is a stand-in; the registry is real.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { request } from 'undici'

export type AuthProxy = { addr: string; tokenRequests: Array<{ authorization?: string; scope?: string; service?: string }>; close: () => Promise<void> }

export async function startAuthProxy(backend: string, mode: 'bearer' | 'basic', user: string, password: string): Promise<AuthProxy> {
  const basic = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
  const token = 'tok-' + Math.random().toString(36).slice(2)
  const tokenRequests: AuthProxy['tokenRequests'] = []
  let addr = ''
  const handler = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', `http://${addr}`)
    if (url.pathname === '/token') {
      tokenRequests.push({ ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}), scope: url.searchParams.get('scope') ?? '', service: url.searchParams.get('service') ?? '' })
      if (req.headers.authorization !== basic) {
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"errors":[{"code":"UNAUTHORIZED"}]}')
        return
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token, expires_in: 300 }))
      return
    }
    const ok = mode === 'bearer' ? req.headers.authorization === `Bearer ${token}` : req.headers.authorization === basic
    if (!ok) {
      const challenge = mode === 'bearer' ? `Bearer realm="http://${addr}/token",service="labtest",scope="repository:x:pull"` : 'Basic realm="labtest"'
      req.resume()
      res.writeHead(401, { 'www-authenticate': challenge, 'content-type': 'application/json' }).end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}')
      return
    }
    const headers: Record<string, string> = {}
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && k !== 'authorization' && k !== 'host' && k !== 'connection') headers[k] = v
    const up = await request(`http://${backend}${req.url}`, {
      method: req.method as 'GET',
      headers,
      ...(req.method === 'PUT' || req.method === 'POST' || req.method === 'PATCH' ? { body: req } : {}),
      headersTimeout: 10_000,
      bodyTimeout: 10_000,
    })
    const out: Record<string, string> = {}
    for (const [k, v] of Object.entries(up.headers)) if (typeof v === 'string' && k !== 'connection' && k !== 'transfer-encoding') out[k] = k === 'location' ? v.replace(`http://${backend}`, `http://${addr}`) : v
    res.writeHead(up.statusCode, out)
    for await (const c of up.body) res.write(c)
    res.end()
  }
  const server: Server = createServer((req, res) => {
    handler(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(502)
      res.end()
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  addr = `127.0.0.1:${(server.address() as AddressInfo).port}`
  return { addr, tokenRequests, close: () => new Promise((r) => server.close(() => r())) }
}
