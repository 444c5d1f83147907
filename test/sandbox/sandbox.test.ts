import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { readState } from '../../src/sandbox/layout.js'
import { Agent } from 'undici'
import { describe, expect, inject, it } from 'vitest'
import { parseInventory } from '../../src/inventory/load.js'
import { httpRequest } from '../../src/net/http.js'
import { resolveName } from '../../src/net/dns.js'
import { labctl, parseJson } from '../helpers.js'

const sb = inject('sandbox')
const inventory = () => parseInventory(readFileSync(sb.inventory, 'utf8'), sb.inventory)

/** The edge's address: 127.0.0.1 in the loopback sandbox, the edge node's lab address with --net. */
const edgeAddress = (): string => readState(sb.dir)?.net?.nodes.edge.address ?? '127.0.0.1'

/** A lookup that sends every name to the sandbox edge, as /etc/hosts would. */
const toLoopback = (_h: string, o: { all?: boolean }, cb: (...a: unknown[]) => void): void =>
  o.all ? cb(null, [{ address: edgeAddress(), family: 4 }]) : cb(null, edgeAddress(), 4)

/** Talks to HAProxy on 127.0.0.1 with the public name as SNI, verifying against the sandbox CA. */
function edge(): { url: (path: string) => string; dispatcher: Agent } {
  const inv = inventory()
  const pub = new URL(inv.trivy.publicUrl)
  const ca = readFileSync(inv.trivy.caBundle!, 'utf8')
  const dispatcher = new Agent({ connect: { ca, lookup: toLoopback as never } })
  return { url: (path) => `https://${pub.host}${path}`, dispatcher }
}

describe('sandbox lab', () => {
  it('writes a valid inventory named "sandbox"', async () => {
    const r = await labctl(['config', 'validate', '--lab', 'sandbox', '--json'])
    expect(r.exitCode, r.stderr).toBe(0)
    expect(parseJson(r.stdout)).toMatchObject({ lab: 'sandbox', hosts: ['trivy-0'] })
  })

  it('answers the lab names from its own DNS server', async () => {
    const inv = inventory()
    const host = inv.trivy.hosts[0]!
    const fqdn = await resolveName(host.fqdn, inv.dns.servers, 1000)
    expect(fqdn).toMatchObject({ status: 'ok', addresses: [host.address] })
    expect(host.address).toBe(readState(sb.dir)?.net?.nodes['trivy-0'].address ?? '127.0.0.1')
    const alias = await resolveName(host.aliases[0]!, inv.dns.servers, 1000)
    expect(alias.status).toBe('ok')
    expect(alias.cnames).toEqual([host.fqdn])
    const pub = await resolveName(new URL(inv.trivy.publicUrl).hostname, inv.dns.servers, 1000)
    expect(pub.addresses).toEqual([edgeAddress()])
    const missing = await resolveName('nope.sandbox.lab.test', inv.dns.servers, 1000)
    expect(missing.status).toBe('nxdomain')
  })

  it('serves /healthz and /version through HAProxy with the generated CA', async () => {
    const { url, dispatcher } = edge()
    const health = await httpRequest(url('/healthz'), { timeoutMs: 5000, dispatcher })
    expect(health.status).toBe(200)
    expect(health.body.trim()).toBe('ok')
    const version = await httpRequest(url('/version'), { timeoutMs: 5000, dispatcher })
    const v = JSON.parse(version.body) as { Version: string; VulnerabilityDB?: { Version: number; UpdatedAt: string } }
    expect(v.Version).toBe('0.74.0')
    expect(v.VulnerabilityDB?.Version).toBe(2)
    expect(Date.parse(v.VulnerabilityDB!.UpdatedAt)).toBeGreaterThan(Date.now() - 3_600_000)
  })

  it('refuses a Twirp call without the token (401)', async () => {
    const { url, dispatcher } = edge()
    const res = await httpRequest(url('/twirp/trivy.cache.v1.Cache/MissingBlobs'), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ artifact_id: 'sha256:00', blob_ids: [] }),
      timeoutMs: 5000,
      dispatcher,
    })
    expect(res.status).toBe(401)
    expect(JSON.parse(res.body)).toMatchObject({ code: 'unauthenticated' })
  })

  it('rejects a TLS client that does not trust the sandbox CA', async () => {
    const inv = inventory()
    const plain = new Agent({ connect: { lookup: toLoopback as never } })
    await expect(httpRequest(`${inv.trivy.publicUrl}/healthz`, { timeoutMs: 5000, dispatcher: plain })).rejects.toThrow(/certificate/)
  })

  it('holds the test image in its registry', async () => {
    const [hostPort, repoTag] = [sb.image.split('/')[0]!, sb.image.split('/').slice(1).join('/')]
    const [repo, tag] = repoTag.split(':') as [string, string]
    // On a machine of its own the registry speaks HTTPS with a certificate of the sandbox CA; on loopback plain HTTP.
    const tls = readState(sb.dir)?.registryTls === true
    const dispatcher = new Agent({ connect: { ca: readFileSync(inventory().trivy.caBundle!, 'utf8') } })
    const res = await httpRequest(`${tls ? 'https' : 'http'}://${hostPort}/v2/${repo}/manifests/${tag}`, {
      timeoutMs: 5000,
      dispatcher,
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' },
    })
    await dispatcher.close()
    expect(res.status).toBe(200)
    expect(JSON.parse(res.body).layers).toHaveLength(1)
  })

  it('is built by labctl itself: `trivy install --dry-run` has nothing to change, and the edge runs the rendered backend', async () => {
    type Plan = { hosts: Array<{ changes: number; plan: Array<{ id: string; action: string }> }> }
    const r = await labctl(['trivy', 'install', '--lab', 'sandbox', '--dry-run', '--json'], { timeoutMs: 120_000 })
    expect(r.exitCode, r.stderr).toBe(0)
    const h = parseJson<Plan>(r.stdout).hosts[0]!
    // Every resource install manages is as install makes it; the firewall is real on the lab network.
    const firewall = readState(sb.dir)?.net ? 'none' : 'skip'
    expect(h.plan.map((x) => [x.id, x.action])).toEqual([
      ['package', 'none'],
      ['hold', 'none'],
      ['user', 'none'],
      ['cache-dir', 'none'],
      ['env-file', 'none'],
      ['unit', 'none'],
      ['firewall', firewall],
      ['service', 'none'],
    ])
    expect(h.changes).toBe(0)
    // The backend HAProxy loads is the one `labctl trivy install --haproxy` renders for this inventory.
    const file = join(mkdtempSync(join(tmpdir(), 'labctl-edge-')), 'edge.cfg')
    const rendered = await labctl(['trivy', 'install', '--lab', 'sandbox', '--haproxy', file])
    expect(rendered.exitCode, rendered.stderr).toBe(0)
    const backend = (text: string): string => /^backend trivy-vm-be\n(?: .*\n)+/m.exec(text)?.[0] ?? 'none'
    const loaded = readFileSync(join(sb.dir, 'trivy-edge.cfg'), 'utf8')
    expect(backend(loaded)).toMatch(/server trivy-0 [\d.]+:4954 check/)
    expect(backend(loaded)).toBe(backend(readFileSync(file, 'utf8')))
  })

  it('`sandbox up` a second time is harmless, and `status` reports every part up', async () => {
    const again = await labctl(['sandbox', 'up', '--json'])
    expect(again.exitCode, again.stderr).toBe(0)
    expect(parseJson(again.stdout)).toMatchObject({ changed: false, up: true })
    const st = await labctl(['sandbox', 'status', '--json'])
    expect(st.exitCode).toBe(0)
    const s = parseJson<{ up: boolean; components: Array<{ name: string; healthy: boolean }> }>(st.stdout)
    expect(s.components.map((c) => [c.name, c.healthy])).toEqual([
      ['registry', true],
      ['dns', true],
      ['host', true],
      ['trivy', true],
      ['haproxy', true],
    ])
  })
})
