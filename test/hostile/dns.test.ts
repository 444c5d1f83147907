// Hostile DNS responders on loopback against labctl's resolver: only matching answers are believed,
// everything else is reported as what it is, within the DNS timeout; resolvers are asked concurrently.
import { afterAll, describe, expect, it } from 'vitest'
import { resolveName } from '../../src/net/dns.js'
import { A, CNAME, deadResolver, dnsResponder, type DnsBehavior } from './responders.js'

const NAME = 'trivy-0.lab.test'
const TIMEOUT = 400
const closers: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const c of closers) await c()
})
async function responder(udp: DnsBehavior, tcp?: DnsBehavior | 'hang'): Promise<string> {
  const r = await dnsResponder(udp, tcp)
  closers.push(r.close)
  return r.server
}
const good: DnsBehavior = (q) => ({ answers: q.type === A ? [{ name: q.name, type: A, address: '10.0.0.10' }] : [] })

type Case = { name: string; udp: DnsBehavior; tcp?: DnsBehavior | 'hang'; status: string; detail: RegExp; addresses?: string[] }
const cases: Case[] = [
  { name: 'an honest answer is accepted', udp: good, status: 'ok', detail: /10\.0\.0\.10/, addresses: ['10.0.0.10'] },
  { name: 'records for another name are refused', udp: (q) => ({ answers: q.type === A ? [{ name: 'evil.example', type: A, address: '6.6.6.6' }] : [] }), status: 'mismatch', detail: /another name \(evil\.example A 6\.6\.6\.6\)/ },
  { name: 'a wrong transaction ID is a mismatch, not a timeout', udp: (q) => ({ id: (q.id + 1) % 65536, answers: [{ name: q.name, type: A, address: '6.6.6.6' }] }), status: 'mismatch', detail: /transaction ID \d+ does not match/ },
  { name: 'an answer to another question is refused', udp: (q) => ({ qname: 'other.example', answers: [{ name: 'other.example', type: A, address: '6.6.6.6' }] }), status: 'mismatch', detail: /another question \(other\.example/ },
  { name: 'a query echoed back (QR=0) is refused', udp: (q) => ({ qr: 0, answers: [{ name: q.name, type: A, address: '6.6.6.6' }] }), status: 'mismatch', detail: /is a query, not a response/ },
  { name: 'garbage bytes are refused', udp: () => ({ raw: Buffer.from([1, 2, 3]) }), status: 'mismatch', detail: /undecodable/ },
  { name: 'a CNAME chain is followed by owner names', udp: (q) => ({ answers: q.type === A ? [{ name: q.name, type: CNAME, domain: 'real.lab.test' }, { name: 'real.lab.test', type: A, address: '10.0.0.11' }] : [] }), status: 'ok', detail: /10\.0\.0\.11 via CNAME real\.lab\.test/, addresses: ['10.0.0.11'] },
  {
    name: 'an address owned by a name off the CNAME chain is not used',
    udp: (q) => ({ answers: q.name === NAME ? [{ name: q.name, type: CNAME, domain: 'real.lab.test' }, { name: 'evil.example', type: A, address: '6.6.6.6' }] : [] }),
    status: 'nodata',
    detail: /real\.lab\.test has no A\/AAAA/,
  },
  { name: 'a silent server is a timeout', udp: () => ({ silent: true }), status: 'timeout', detail: /no answer from .* within 400 ms/ },
  { name: 'NXDOMAIN is reported as such', udp: () => ({ rcode: 3 }), status: 'nxdomain', detail: /does not exist/ },
  { name: 'SERVFAIL is reported as such', udp: () => ({ rcode: 2 }), status: 'servfail', detail: /SERVFAIL/ },
  { name: 'REFUSED is reported as such', udp: () => ({ rcode: 5 }), status: 'refused', detail: /REFUSED/ },
  { name: 'a truncated answer is retried over TCP', udp: () => ({ tc: true }), tcp: good, status: 'ok', detail: /10\.0\.0\.10/ },
  { name: 'the TCP retry obeys the DNS timeout', udp: () => ({ tc: true }), tcp: 'hang', status: 'timeout', detail: /truncated and the TCP retry .* within the DNS timeout/ },
  { name: 'a TCP answer with a wrong ID is a mismatch', udp: () => ({ tc: true }), tcp: (q) => ({ id: (q.id + 7) % 65536, answers: [{ name: q.name, type: A, address: '6.6.6.6' }] }), status: 'mismatch', detail: /over TCP that did not match/ },
  { name: 'a flood of wrong answers then silence is a mismatch', udp: (q) => ({ id: (q.id + 1) % 65536, copies: 50 }), status: 'mismatch', detail: /50 answers that did not match|answers that did not match/ },
  { name: 'a CNAME loop ends', udp: (q) => ({ answers: q.type === A ? [{ name: q.name, type: CNAME, domain: q.name === NAME ? 'b.lab.test' : NAME }] : [] }), status: 'error', detail: /CNAME loop/ },
]

describe('hostile DNS responders', () => {
  for (const c of cases) {
    it(c.name, async () => {
      const server = await responder(c.udp, c.tcp)
      const started = performance.now()
      const a = await resolveName(NAME, [server], TIMEOUT)
      const took = performance.now() - started
      expect(a.status).toBe(c.status)
      expect(a.detail).toMatch(c.detail)
      if (c.addresses) expect(a.addresses).toEqual(c.addresses)
      else expect(a.addresses.filter((x) => x === '6.6.6.6')).toEqual([])
      // Every query (and its TCP retry) ends within the DNS timeout; a CNAME hop may add one more.
      expect(took).toBeLessThan(TIMEOUT * 2 + 500)
    })
  }

  it('a dead first resolver does not slow the second, and is named as a warning', async () => {
    const dead = await deadResolver()
    closers.push(dead.close)
    const live = await responder(good)
    let started = performance.now()
    const first = await resolveName(NAME, [dead.server, live], 3000)
    expect(first.status).toBe('ok')
    expect(performance.now() - started).toBeLessThan(1500)
    started = performance.now()
    const all = await resolveName(NAME, [dead.server, live], 600, { waitAll: true })
    expect(all.status).toBe('ok')
    expect(all.warnings?.join('\n')).toContain(`DNS server ${dead.server} gave no usable answer`)
    expect(performance.now() - started).toBeLessThan(600 + 800)
  })

  it('two dead resolvers take one timeout, not two', async () => {
    const d1 = await deadResolver()
    const d2 = await deadResolver()
    closers.push(d1.close, d2.close)
    const started = performance.now()
    const a = await resolveName(NAME, [d1.server, d2.server], 500)
    expect(a.status).toBe('timeout')
    expect(performance.now() - started).toBeLessThan(500 + 600)
  })
})
