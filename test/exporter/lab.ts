// A lab made of loopback stand-ins for the exporter's unit tests: a DNS server (dns2) answering the
// public name, fake Trivy servers for the edge (HTTPS, certificate from a test CA) and for one host
// (plain HTTP, its debugUrl), and the inventory pointing at them.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import DNS from 'dns2'
import { parseInventory, type LoadedInventory } from '../../src/inventory/load.js'
import { createCa, issueServerCert } from '../../src/sandbox/tls.js'
import { startFakeTrivy, type FakeMode, type FakeTrivy } from './fake-trivy.js'

export const PUBLIC_NAME = 'trivy.apps.exporter.test'
export const TOKEN = 'tok-EXPORTER-secret-4f1c9a7e2b'

export type TestLab = { loaded: LoadedInventory; edge: FakeTrivy; host: FakeTrivy; dir: string; close: () => Promise<void> }

type DnsServer = { listen: (o: { udp: { port: number; address: string } }) => Promise<void>; close: () => Promise<void>; addresses: () => { udp: { port: number } } }

export async function startTestLab(o: { edgeMode?: FakeMode; hostMode?: FakeMode; certDays?: number; hostVersion?: string; dbUpdatedAt?: string } = {}): Promise<TestLab> {
  const dir = mkdtempSync(join(tmpdir(), 'labctl-exporter-test-'))
  const ca = await createCa('exporter test CA')
  const cert = await issueServerCert(ca, { names: [PUBLIC_NAME], notAfter: new Date(Date.now() + (o.certDays ?? 90) * 86_400_000) })
  writeFileSync(join(dir, 'ca.pem'), ca.certPem)
  const edge = await startFakeTrivy({ token: TOKEN, mode: o.edgeMode ?? 'ok', tls: cert, ...(o.dbUpdatedAt ? { updatedAt: o.dbUpdatedAt } : {}) })
  const host = await startFakeTrivy({ token: TOKEN, mode: o.hostMode ?? 'ok', ...(o.hostVersion ? { version: o.hostVersion } : {}), ...(o.dbUpdatedAt ? { updatedAt: o.dbUpdatedAt } : {}) })
  const { Packet } = DNS as unknown as { Packet: { createResponseFromRequest: (r: unknown) => { answers: unknown[]; header: { rcode: number } }; TYPE: { A: number }; CLASS: { IN: number } } }
  const dns = (DNS as unknown as { createServer: (o: unknown) => DnsServer }).createServer({
    udp: true,
    handle: (request: { questions: Array<{ name: string; type: number }> }, send: (r: unknown) => void) => {
      const res = Packet.createResponseFromRequest(request)
      const q = request.questions[0]
      if (q && q.name.toLowerCase() === PUBLIC_NAME && q.type === Packet.TYPE.A) res.answers.push({ name: q.name, type: Packet.TYPE.A, class: Packet.CLASS.IN, ttl: 5, address: '127.0.0.1' })
      else if (!q || q.name.toLowerCase() !== PUBLIC_NAME) res.header.rcode = 3
      send(res)
    },
  })
  await dns.listen({ udp: { port: 0, address: '127.0.0.1' } })
  const dnsPort = dns.addresses().udp.port
  const yaml = `
name: exporter-test
dns: { servers: ["127.0.0.1:${dnsPort}"], timeoutMs: 500 }
trivy:
  version: 0.74.0
  publicUrl: https://${PUBLIC_NAME}:${edge.port}
  caBundle: ca.pem
  hosts:
    - { name: trivy-0, fqdn: trivy-0.exporter.test, debugUrl: "${host.url}" }
thresholds: { dbFreshnessHours: 24, certWarnDays: 21, certCritDays: 7 }
`
  const path = join(dir, 'lab.yaml')
  writeFileSync(path, yaml)
  const loaded: LoadedInventory = { inventory: parseInventory(yaml, path), path, dir }
  return {
    loaded,
    edge,
    host,
    dir,
    close: async () => {
      await Promise.allSettled([edge.close(), host.close(), dns.close()])
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
