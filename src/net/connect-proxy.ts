import { createServer, type Server } from 'node:http'
import { connect, isIP, type AddressInfo, type Socket } from 'node:net'
import { resolveName } from './dns.js'

/**
 * A CONNECT-only proxy on 127.0.0.1 that resolves names through the lab's DNS servers. Child
 * programs (the trivy client) use it through HTTPS_PROXY, so they reach the lab's names exactly as
 * labctl does, with TLS still end to end between them and the server. Nothing else is proxied.
 */
export async function startConnectProxy(opts: { dnsServers: string[]; dnsTimeoutMs: number; connectTimeoutMs?: number }): Promise<{ url: string; close: () => Promise<void> }> {
  const sockets = new Set<Socket>()
  const server: Server = createServer((_req, res) => {
    res.writeHead(405, { 'content-type': 'text/plain' }).end('CONNECT only\n')
  })
  server.on('connect', (req, client: Socket) => {
    sockets.add(client)
    client.on('close', () => sockets.delete(client))
    client.on('error', () => client.destroy())
    const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(req.url ?? '')
    if (!m) {
      client.end('HTTP/1.1 400 Bad Request\r\n\r\n')
      return
    }
    const [, host, port] = m as unknown as [string, string, string]
    const target = isIP(host)
      ? Promise.resolve(host)
      : resolveName(host, opts.dnsServers, opts.dnsTimeoutMs).then((a) => (a.status === 'ok' ? a.addresses[0]! : host))
    target
      .then((address) => {
        const upstream = connect({ host: address, port: Number(port), timeout: opts.connectTimeoutMs ?? 5000 })
        sockets.add(upstream)
        upstream.on('close', () => sockets.delete(upstream))
        upstream.once('timeout', () => upstream.destroy(new Error('connect timeout')))
        upstream.once('connect', () => {
          upstream.setTimeout(0)
          client.write('HTTP/1.1 200 Connection Established\r\n\r\n')
          upstream.pipe(client)
          client.pipe(upstream)
        })
        upstream.on('error', () => {
          if (!client.destroyed) client.end('HTTP/1.1 502 Bad Gateway\r\n\r\n')
        })
      })
      .catch(() => client.end('HTTP/1.1 502 Bad Gateway\r\n\r\n'))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      }),
  }
}
