import DNS from 'dns2'

export type DnsStatus = 'ok' | 'nxdomain' | 'nodata' | 'servfail' | 'refused' | 'timeout' | 'error'
export type DnsAnswer = { name: string; status: DnsStatus; addresses: string[]; cnames: string[]; server: string; detail: string }

type Packet = { header: { rcode: number }; answers: Array<{ name: string; type: number; address?: string; domain?: string }> }

const TYPE_A = 1
const TYPE_CNAME = 5
const TYPE_AAAA = 28

/** "10.0.0.53", "127.0.0.1:5353" or "[::1]:53" → address and port. */
export function parseServer(server: string): { host: string; port: number } {
  const v6 = /^\[([^\]]+)\]:(\d+)$/.exec(server)
  if (v6) return { host: v6[1]!, port: Number(v6[2]) }
  const v4 = /^([\d.]+):(\d+)$/.exec(server)
  if (v4) return { host: v4[1]!, port: Number(v4[2]) }
  return { host: server, port: 53 }
}

const RCODE: Record<number, DnsStatus> = { 0: 'ok', 2: 'servfail', 3: 'nxdomain', 5: 'refused' }

async function query(server: string, name: string, type: 'A' | 'AAAA', timeoutMs: number): Promise<Packet> {
  const { host, port } = parseServer(server)
  const client = DNS.UDPClient({ dns: host, port, timeout: timeoutMs, socketType: host.includes(':') ? 'udp6' : 'udp4' } as never) as unknown as (
    name: string,
    type: string,
  ) => Promise<Packet>
  return client(name, type)
}

/**
 * Resolves NAME to its addresses (A and AAAA, following CNAMEs) by asking the lab's own DNS servers,
 * never the system resolver. NXDOMAIN, SERVFAIL, REFUSED and a timeout are distinct outcomes.
 */
export async function resolveName(name: string, servers: string[], timeoutMs: number): Promise<DnsAnswer> {
  let last: DnsAnswer = { name, status: 'error', addresses: [], cnames: [], server: '', detail: 'no DNS server configured' }
  for (const server of servers) {
    const answer = await resolveWith(server, name, timeoutMs)
    if (answer.status === 'ok' || answer.status === 'nxdomain' || answer.status === 'nodata') return answer
    last = answer
  }
  return last
}

async function resolveWith(server: string, name: string, timeoutMs: number): Promise<DnsAnswer> {
  const cnames: string[] = []
  let current = name.replace(/\.$/, '')
  for (let hop = 0; hop < 8; hop++) {
    let packets: Packet[]
    try {
      packets = await Promise.all([query(server, current, 'A', timeoutMs), query(server, current, 'AAAA', timeoutMs)])
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      const status: DnsStatus = code === 'ETIMEDOUT' ? 'timeout' : 'error'
      return { name, status, addresses: [], cnames, server, detail: status === 'timeout' ? `no answer from ${server} within ${timeoutMs} ms` : `query to ${server} failed: ${String(code ?? err)}` }
    }
    const [a, aaaa] = packets as [Packet, Packet]
    const status = RCODE[a.header.rcode] ?? 'error'
    if (status !== 'ok') {
      const detail = status === 'nxdomain' ? `${current} does not exist (NXDOMAIN from ${server})` : `${server} answered ${status.toUpperCase()} (rcode ${a.header.rcode}) for ${current}`
      return { name, status, addresses: [], cnames, server, detail }
    }
    const all = [...a.answers, ...aaaa.answers]
    const addresses = [...new Set(all.filter((r) => r.type === TYPE_A || r.type === TYPE_AAAA).map((r) => r.address!))]
    const cnameRecs = a.answers.filter((r) => r.type === TYPE_CNAME)
    for (const c of cnameRecs) if (c.domain && !cnames.includes(c.domain)) cnames.push(c.domain)
    if (addresses.length > 0) return { name, status: 'ok', addresses, cnames, server, detail: `${addresses.join(', ')}${cnames.length ? ` via CNAME ${cnames.join(' → ')}` : ''}` }
    const target = cnameRecs.at(-1)?.domain
    if (!target) return { name, status: 'nodata', addresses: [], cnames, server, detail: `${current} has no A/AAAA record at ${server}` }
    current = target
  }
  return { name, status: 'error', addresses: [], cnames, server, detail: `CNAME chain for ${name} is longer than 8 hops` }
}
