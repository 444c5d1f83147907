// Hostile peers on loopback for the hostile-input suite: DNS responders (UDP and TCP) that lie in
// specific ways, and HTTP servers that misbehave. Each returns its address and a close().
import { createSocket } from 'node:dgram'
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { createServer as createTcpServer, type AddressInfo } from 'node:net'
import DNS from 'dns2'

type Q = { id: number; name: string; type: number }
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const Packet = (DNS as any).Packet

export type DnsBehavior = (q: Q) => { answers?: Array<{ name: string; type: number; address?: string; domain?: string }>; id?: number; qname?: string; rcode?: number; tc?: boolean; qr?: number; raw?: Buffer; silent?: boolean; copies?: number }

function encode(q: Q, b: ReturnType<DnsBehavior>): Buffer {
  if (b.raw) return b.raw
  const p = new Packet()
  p.header.id = b.id ?? q.id
  p.header.qr = b.qr ?? 1
  p.header.rd = 1
  p.header.ra = 1
  p.header.rcode = b.rcode ?? 0
  if (b.tc) p.header.tc = 1
  p.questions.push({ name: b.qname ?? q.name, type: q.type, class: 1 })
  for (const a of b.answers ?? []) p.answers.push({ class: 1, ttl: 60, ...a })
  return p.toBuffer()
}

export async function dnsResponder(udp: DnsBehavior, tcp?: DnsBehavior | 'hang'): Promise<{ server: string; port: number; close: () => Promise<void> }> {
  const sock = createSocket('udp4')
  sock.on('message', (msg, rinfo) => {
    const p = Packet.parse(msg)
    const q: Q = { id: p.header.id, name: p.questions[0].name, type: p.questions[0].type }
    const b = udp(q)
    if (b.silent) return
    const out = encode(q, b)
    for (let i = 0; i < (b.copies ?? 1); i++) sock.send(out, rinfo.port, rinfo.address)
  })
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()))
  const port = (sock.address() as AddressInfo).port
  const conns = new Set<import('node:net').Socket>()
  const tcpServer = createTcpServer((c) => {
    conns.add(c)
    c.on('close', () => conns.delete(c))
    c.on('error', () => {})
    if (tcp === 'hang' || !tcp) return
    let buf = Buffer.alloc(0)
    c.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d])
      if (buf.length < 2 || buf.length < 2 + buf.readUInt16BE(0)) return
      const p = Packet.parse(buf.subarray(2, 2 + buf.readUInt16BE(0)))
      const q: Q = { id: p.header.id, name: p.questions[0].name, type: p.questions[0].type }
      const out = encode(q, tcp(q))
      const len = Buffer.alloc(2)
      len.writeUInt16BE(out.length)
      c.end(Buffer.concat([len, out]))
    })
  })
  await new Promise<void>((r, j) => tcpServer.once('error', j).listen(port, '127.0.0.1', () => r()))
  return {
    server: `127.0.0.1:${port}`,
    port,
    close: async () => {
      sock.close()
      for (const c of conns) c.destroy()
      await new Promise<void>((r) => tcpServer.close(() => r()))
    },
  }
}

/** A UDP port with nobody answering (bound, silent): a dead resolver. */
export async function deadResolver(): Promise<{ server: string; close: () => Promise<void> }> {
  const sock = createSocket('udp4')
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()))
  return { server: `127.0.0.1:${(sock.address() as AddressInfo).port}`, close: async () => sock.close() }
}

export async function httpServer(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ url: string; port: number; close: () => Promise<void> }> {
  const srv = createHttpServer(handler)
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()))
  const port = (srv.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    close: async () => {
      srv.closeAllConnections()
      await new Promise<void>((r) => srv.close(() => r()))
    },
  }
}

export const A = 1
export const AAAA = 28
export const CNAME = 5
