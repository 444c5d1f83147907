// A small stub resolver that asks the lab's own DNS servers and believes only answers that match
// what was asked: the transaction ID, the question (name, type, class) and, for every record used,
// its owner name along the CNAME chain. dns2 encodes and decodes the packets; the transport is here,
// so each of those checks (and a TCP retry inside the same deadline) is ours.
import { randomInt } from 'node:crypto'
import { createSocket } from 'node:dgram'
import { connect, isIPv6 } from 'node:net'
import DNS from 'dns2'

export type DnsStatus = 'ok' | 'nxdomain' | 'nodata' | 'servfail' | 'refused' | 'timeout' | 'mismatch' | 'error'
export type DnsAnswer = {
  name: string
  status: DnsStatus
  addresses: string[]
  cnames: string[]
  server: string
  detail: string
  /** Other configured servers that did not give a usable answer (each names the server). */
  warnings?: string[]
}

type Record = { name: string; type: number; class?: number; address?: string; domain?: string }
type Packet = {
  header: { id: number; qr: number; tc: number; rcode: number }
  questions: Array<{ name: string; type: number; class: number }>
  answers: Record[]
}

const Packet = (DNS as unknown as { Packet: { new (): { header: { id: number; rd: number }; questions: unknown[]; toBuffer(): Buffer }; parse(b: Buffer): Packet } }).Packet

const TYPE = { A: 1, CNAME: 5, AAAA: 28 } as const
const CLASS_IN = 1
const MAX_HOPS = 8

/** "10.0.0.53", "127.0.0.1:5353", "::1", "[::1]" or "[::1]:53" → address and port. */
export function parseServer(server: string): { host: string; port: number } {
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(server)
  if (v6) return { host: v6[1]!, port: v6[2] ? Number(v6[2]) : 53 }
  const v4 = /^([\d.]+):(\d+)$/.exec(server)
  if (v4) return { host: v4[1]!, port: Number(v4[2]) }
  return { host: server, port: 53 }
}

const RCODE: { [k: number]: DnsStatus } = { 0: 'ok', 2: 'servfail', 3: 'nxdomain', 5: 'refused' }

/** A query that got no acceptable answer: a timeout, answers that did not match, or a transport error. */
export class DnsQueryError extends Error {
  constructor(
    readonly kind: 'timeout' | 'mismatch' | 'error',
    message: string,
  ) {
    super(message)
    this.name = 'DnsQueryError'
  }
}

const norm = (n: string): string => n.replace(/\.$/, '').toLowerCase()

function encodeQuery(id: number, name: string, type: number): Buffer {
  const q = new Packet()
  q.header.id = id
  q.header.rd = 1
  q.questions.push({ name, type, class: CLASS_IN })
  return q.toBuffer()
}

/** Why a decoded packet is not the answer to our query, or undefined when it is. */
function mismatch(p: Packet, id: number, name: string, type: number): string | undefined {
  if (p.header.id !== id) return `transaction ID ${p.header.id} does not match the query's ${id}`
  if (p.header.qr !== 1) return 'the packet is a query, not a response'
  const q = p.questions
  if (q.length !== 1) return `the response carries ${q.length} questions instead of the one asked`
  if (norm(q[0]!.name) !== norm(name) || q[0]!.type !== type || q[0]!.class !== CLASS_IN) {
    return `the response answers another question (${q[0]!.name} type ${q[0]!.type}) than the one asked (${name} type ${type})`
  }
  return undefined
}

/** One query over UDP (TCP when the answer is truncated), all within `timeoutMs`. */
export function query(server: string, name: string, type: 'A' | 'AAAA', timeoutMs: number): Promise<Packet> {
  const { host, port } = parseServer(server)
  const qtype = TYPE[type]
  const id = randomInt(0, 65536)
  const deadline = performance.now() + timeoutMs
  const msg = encodeQuery(id, name, qtype)
  return new Promise<Packet>((resolve, reject) => {
    const sock = createSocket(isIPv6(host) ? 'udp6' : 'udp4')
    const rejected: string[] = []
    let done = false
    const finish = (err: Error | undefined, p?: Packet): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      sock.close()
      if (err) reject(err)
      else resolve(p!)
    }
    const timer = setTimeout(() => {
      if (rejected.length > 0) {
        finish(new DnsQueryError('mismatch', `${server} sent ${rejected.length} answer${rejected.length > 1 ? 's' : ''} that did not match the query for ${name} (${rejected[0]}) and no matching one within ${timeoutMs} ms`))
      } else finish(new DnsQueryError('timeout', `no answer from ${server} within ${timeoutMs} ms`))
    }, timeoutMs)
    sock.on('error', (err) => finish(new DnsQueryError('error', `query to ${server} failed: ${(err as NodeJS.ErrnoException).code ?? err.message}`)))
    sock.on('message', (buf, rinfo) => {
      if (rinfo.port !== port || norm(rinfo.address) !== norm(host)) {
        if (rejected.length < 100) rejected.push(`an answer came from ${rinfo.address}:${rinfo.port}`)
        return
      }
      let p: Packet
      try {
        p = Packet.parse(buf)
      } catch (err) {
        if (rejected.length < 100) rejected.push(`an undecodable packet: ${(err as Error).message}`)
        return
      }
      const why = mismatch(p, id, name, qtype)
      if (why) {
        if (rejected.length < 100) rejected.push(why)
        return
      }
      if (p.header.tc) {
        // Truncated: ask again over TCP, inside what is left of the same deadline.
        const left = Math.max(1, deadline - performance.now())
        done = true
        clearTimeout(timer)
        sock.close()
        queryTcp(host, port, server, name, qtype, left).then(resolve, reject)
        return
      }
      finish(undefined, p)
    })
    sock.send(msg, port, host, (err) => {
      if (err) finish(new DnsQueryError('error', `query to ${server} failed: ${(err as NodeJS.ErrnoException).code ?? err.message}`))
    })
  })
}

function queryTcp(host: string, port: number, server: string, name: string, qtype: number, timeoutMs: number): Promise<Packet> {
  const id = randomInt(0, 65536)
  const msg = encodeQuery(id, name, qtype)
  return new Promise<Packet>((resolve, reject) => {
    const sock = connect({ host, port })
    let buf = Buffer.alloc(0)
    let done = false
    const finish = (err: Error | undefined, p?: Packet): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      sock.destroy()
      if (err) reject(err)
      else resolve(p!)
    }
    const timer = setTimeout(() => finish(new DnsQueryError('timeout', `the answer for ${name} was truncated and the TCP retry to ${server} got no answer within the DNS timeout`)), timeoutMs)
    sock.on('error', (err) => finish(new DnsQueryError('error', `the answer was truncated and the TCP retry to ${server} failed: ${(err as NodeJS.ErrnoException).code ?? err.message}`)))
    sock.on('connect', () => {
      const len = Buffer.alloc(2)
      len.writeUInt16BE(msg.length)
      sock.write(Buffer.concat([len, msg]))
    })
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk])
      if (buf.length > 65_537) return finish(new DnsQueryError('error', `${server} sent more than a DNS message over TCP`))
      if (buf.length < 2) return
      const need = buf.readUInt16BE(0)
      if (buf.length < 2 + need) return
      let p: Packet
      try {
        p = Packet.parse(buf.subarray(2, 2 + need))
      } catch (err) {
        return finish(new DnsQueryError('mismatch', `${server} sent an undecodable answer over TCP: ${(err as Error).message}`))
      }
      const why = mismatch(p, id, name, qtype)
      if (why) return finish(new DnsQueryError('mismatch', `${server} sent an answer over TCP that did not match the query (${why})`))
      finish(undefined, p)
    })
    sock.on('end', () => finish(new DnsQueryError('error', `${server} closed the TCP connection without a full answer`)))
  })
}

const definitive = (s: DnsStatus): boolean => s === 'ok' || s === 'nxdomain' || s === 'nodata'

/**
 * Resolves NAME to its addresses (A and AAAA, following CNAMEs) by asking every lab DNS server at
 * once, never the system resolver. The first address answer wins (a dead server does not slow the
 * others); with `waitAll` every server's outcome is awaited (validate). Servers that did not give a
 * usable answer are listed in `warnings`, each by name. NXDOMAIN, SERVFAIL, REFUSED, a timeout and a
 * non-matching answer are distinct outcomes.
 */
export function resolveName(name: string, servers: string[], timeoutMs: number, opts: { waitAll?: boolean } = {}): Promise<DnsAnswer> {
  if (servers.length === 0) return Promise.resolve({ name, status: 'error', addresses: [], cnames: [], server: '', detail: 'no DNS server configured' })
  return new Promise<DnsAnswer>((resolve) => {
    const results: Array<DnsAnswer | undefined> = servers.map(() => undefined)
    let pending = servers.length
    let settled = false
    const warningsOf = (chosen: DnsAnswer): string[] => {
      const out: string[] = []
      results.forEach((r, i) => {
        if (!r || r === chosen) return
        if (!definitive(r.status)) out.push(`DNS server ${servers[i]} gave no usable answer: ${r.detail}`)
        else if (r.status !== chosen.status) out.push(`DNS server ${servers[i]} disagrees: ${r.detail}`)
      })
      return out
    }
    const settle = (chosen: DnsAnswer): void => {
      settled = true
      const warnings = warningsOf(chosen)
      resolve(warnings.length ? { ...chosen, warnings } : chosen)
    }
    servers.forEach((server, i) => {
      resolveWith(server, name, timeoutMs)
        .catch((err: unknown): DnsAnswer => ({ name, status: 'error', addresses: [], cnames: [], server, detail: `query to ${server} failed: ${(err as Error).message}` }))
        .then((r) => {
          results[i] = r
          pending -= 1
          if (settled) return
          if (!opts.waitAll && r.status === 'ok') return settle(r)
          if (pending > 0) return
          const all = results as DnsAnswer[]
          settle(all.find((x) => x.status === 'ok') ?? all.find((x) => definitive(x.status)) ?? all.find((x) => x.status === 'mismatch') ?? all[0]!)
        })
    })
  })
}

async function resolveWith(server: string, name: string, timeoutMs: number): Promise<DnsAnswer> {
  const cnames: string[] = []
  let current = name.replace(/\.$/, '')
  const visited = new Set<string>()
  for (let hop = 0; hop < MAX_HOPS; hop++) {
    if (visited.has(norm(current))) return { name, status: 'error', addresses: [], cnames, server, detail: `CNAME loop for ${name} at ${current} (${server})` }
    visited.add(norm(current))
    let packets: [Packet, Packet]
    try {
      packets = await Promise.all([query(server, current, 'A', timeoutMs), query(server, current, 'AAAA', timeoutMs)])
    } catch (err) {
      const kind = err instanceof DnsQueryError ? err.kind : 'error'
      return { name, status: kind, addresses: [], cnames, server, detail: err instanceof DnsQueryError ? err.message : `query to ${server} failed: ${String(err)}` }
    }
    const [a, aaaa] = packets
    const status = RCODE[a.header.rcode] ?? 'error'
    if (status !== 'ok') {
      const detail = status === 'nxdomain' ? `${current} does not exist (NXDOMAIN from ${server})` : `${server} answered ${status.toUpperCase()} (rcode ${a.header.rcode}) for ${current}`
      return { name, status, addresses: [], cnames, server, detail }
    }
    // Follow the CNAME chain from the name asked; only records owned by a name on it count.
    const chain = [norm(current)]
    const cnameOf = new Map<string, string>()
    for (const r of a.answers) if (r.type === TYPE.CNAME && r.domain && !cnameOf.has(norm(r.name))) cnameOf.set(norm(r.name), r.domain)
    for (let i = 0; i < MAX_HOPS; i++) {
      const next = cnameOf.get(chain.at(-1)!)
      if (!next || chain.includes(norm(next))) break
      chain.push(norm(next))
      cnames.push(next.replace(/\.$/, ''))
    }
    const canonical = chain.at(-1)!
    const owned = (r: Record, type: number): boolean => r.type === type && norm(r.name) === canonical && typeof r.address === 'string'
    const addresses = [...new Set([...a.answers.filter((r) => owned(r, TYPE.A)), ...aaaa.answers.filter((r) => owned(r, TYPE.AAAA))].map((r) => r.address!))]
    if (addresses.length > 0) return { name, status: 'ok', addresses, cnames: [...cnames], server, detail: `${addresses.join(', ')}${cnames.length ? ` via CNAME ${cnames.join(' → ')}` : ''}` }
    const foreign = [...a.answers, ...aaaa.answers].filter((r) => (r.type === TYPE.A || r.type === TYPE.AAAA || r.type === TYPE.CNAME) && !chain.includes(norm(r.name)))
    if (foreign.length > 0 && chain.length === 1) {
      const f = foreign[0]!
      return { name, status: 'mismatch', addresses: [], cnames, server, detail: `${server} answered for ${current} with records of another name (${f.name} ${f.type === TYPE.CNAME ? 'CNAME' : f.type === TYPE.A ? 'A' : 'AAAA'} ${f.address ?? f.domain ?? ''}): not accepted` }
    }
    if (chain.length === 1) return { name, status: 'nodata', addresses: [], cnames, server, detail: `${current} has no A/AAAA record at ${server}` }
    current = canonical
  }
  return { name, status: 'error', addresses: [], cnames, server, detail: `CNAME chain for ${name} is longer than ${MAX_HOPS} hops` }
}
