// The edge client against a real HAProxy (Debian) with a real admin socket, reached over a real OpenSSH
// server (test/ssh/sshd.ts) through a forwarded stream to the socket: nothing listens on the network for it.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { until } from './fixtures.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { makeEdge, socketTransport, sshTransport, type Edge } from '../../src/edge/index.js'
import { EdgeSchema } from '../../src/inventory/schema.js'
import { freePorts } from '../../src/sandbox/proc.js'
import { Remote } from '../../src/ssh/remote.js'
import { startSshd, type Sshd } from '../ssh/sshd.js'

let dir: string
let sshd: Sshd
let haproxy: ChildProcess
let backend: Server
let remote: Remote
let edge: Edge
let fePort: number
let sock: string


beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'labctl-edge-'))
  sock = join(dir, 'admin.sock')
  const [be, dead, fe] = (await freePorts(3)) as [number, number, number]
  fePort = fe
  // trivy-0: a live server (slow on /slow, to hold a request in flight); trivy-1: nothing listens.
  backend = createServer((req, res) => {
    if (req.url === '/slow') setTimeout(() => res.end('done'), 1500)
    else res.end('ok')
  })
  await new Promise<void>((r) => backend.listen(be, '127.0.0.1', r))
  writeFileSync(
    join(dir, 'haproxy.cfg'),
    `global
  stats socket ${sock} mode 600 level admin
defaults
  mode http
  timeout connect 1s
  timeout client 10s
  timeout server 10s
frontend fe
  bind 127.0.0.1:${fe}
  default_backend trivy-vm-be
backend trivy-vm-be
  option httpchk GET /healthz
  http-check expect string ok
  default-server inter 300ms fall 1 rise 1
  server trivy-0 127.0.0.1:${be} check
  server trivy-1 127.0.0.1:${dead} check
`,
  )
  haproxy = spawn('/usr/sbin/haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')], { stdio: 'ignore' })
  sshd = await startSshd({ extraConfig: ['AllowStreamLocalForwarding yes'] })
  const kh = join(dir, 'known_hosts')
  writeFileSync(kh, `${sshd.knownHostsLine()}\n`, { mode: 0o600 })
  remote = new Remote({ sshConfigFile: null, env: { HOME: dir } })
  const cfg = EdgeSchema.parse({ host: '127.0.0.1', ssh: { user: sshd.user, port: sshd.port, identityFile: sshd.clientKey, knownHostsFile: kh }, socket: sock })
  edge = makeEdge({ transport: sshTransport(remote, cfg), backend: cfg.backend, where: `127.0.0.1:${sock}`, timeoutMs: 3000 })
  await until('the health checks', async () => (await edge.servers()).map((s) => s.status).join() === 'UP,DOWN')
}, 60_000)

afterAll(async () => {
  await remote?.close()
  haproxy?.kill('SIGTERM')
  await sshd?.stop()
  await new Promise((r) => backend?.close(r))
  rmSync(dir, { recursive: true, force: true })
})

describe('edge over SSH to a real HAProxy', () => {
  it('reads the backend: one server UP, the dead one DOWN, as the socket itself says', async () => {
    const viaSsh = await edge.servers()
    expect(viaSsh.map((s) => [s.name, s.status, s.up, s.admin, s.operational])).toEqual([
      ['trivy-0', 'UP', true, 'ready', 'running'],
      ['trivy-1', 'DOWN', false, 'ready', 'stopped'],
    ])
    expect(viaSsh[1]!.check).toMatch(/L4CON/)
    const local = await makeEdge({ transport: socketTransport(sock), backend: 'trivy-vm-be', where: sock }).servers()
    expect(local.map((s) => [s.name, s.status, s.admin])).toEqual(viaSsh.map((s) => [s.name, s.status, s.admin]))
    // Every command went over the one SSH connection.
    expect(remote.handshakes).toBe(1)
  })

  it('drains, puts in maintenance and re-enables a host; the edge stops and resumes sending it traffic', async () => {
    expect((await edge.setState('trivy-0', 'drain')).admin).toBe('drain')
    expect((await edge.server('trivy-0')).status).toBe('DRAIN')
    const drained = await request(`http://127.0.0.1:${fePort}/healthz`, { headersTimeout: 3000, bodyTimeout: 3000 })
    await drained.body.text()
    expect(drained.statusCode).toBe(503)
    expect((await edge.setState('trivy-0', 'maint')).status).toBe('MAINT')
    const back = await edge.setState('trivy-0', 'ready')
    expect(back.admin).toBe('ready')
    await until('trivy-0 UP again', async () => (await edge.server('trivy-0')).up)
    const served = await request(`http://127.0.0.1:${fePort}/healthz`, { headersTimeout: 3000, bodyTimeout: 3000 })
    expect([served.statusCode, await served.body.text()]).toEqual([200, 'ok'])
  })

  it('sees a request in flight and waits for it after the drain', async () => {
    const slow = request(`http://127.0.0.1:${fePort}/slow`, { headersTimeout: 5000, bodyTimeout: 5000 }).then(async (r) => [r.statusCode, await r.body.text()])
    await until('the request in flight', async () => (await edge.server('trivy-0')).inFlight > 0, 3000)
    await edge.setState('trivy-0', 'drain')
    const w = await edge.waitIdle('trivy-0', { timeoutMs: 5000, pollMs: 100 })
    expect(w.inFlight).toBe(0)
    expect(w.waitedMs).toBeGreaterThan(200)
    // The drain let the request in flight finish.
    expect(await slow).toEqual([200, 'done'])
    await edge.setState('trivy-0', 'ready')
  })

  it('a bounded wait reports what is left', async () => {
    const slow = request(`http://127.0.0.1:${fePort}/slow`, { headersTimeout: 5000, bodyTimeout: 5000 }).then((r) => r.body.text())
    await until('the request in flight', async () => (await edge.server('trivy-0')).inFlight > 0, 3000)
    const w = await edge.waitIdle('trivy-0', { timeoutMs: 300, pollMs: 100 })
    expect(w.inFlight).toBeGreaterThan(0)
    await slow
  })

  it('an unknown server, an unknown backend and a wrong socket are one-line errors naming what to fix', async () => {
    await expect(edge.setState('trivy-9', 'drain')).rejects.toThrow(/has no server "trivy-9" \(it has trivy-0, trivy-1\)/)
    const wrongBe = makeEdge({ transport: socketTransport(sock), backend: 'nope-be', where: sock })
    await expect(wrongBe.servers()).rejects.toThrow(/refused `show servers state`: Can't find backend/)
    const cfg = EdgeSchema.parse({ host: '127.0.0.1', ssh: { user: sshd.user, port: sshd.port, identityFile: sshd.clientKey, knownHostsFile: join(dir, 'known_hosts') }, socket: `${dir}/missing.sock` })
    const wrongSock = makeEdge({ transport: sshTransport(remote, cfg), backend: 'trivy-vm-be', where: 'x' })
    await expect(wrongSock.servers()).rejects.toThrow(/refused a stream to .*missing\.sock/)
    // The states were not changed by the refused commands.
    expect((await edge.servers()).map((s) => s.admin)).toEqual(['ready', 'ready'])
  })

  it('the edge section of the inventory: defaults and bad values', () => {
    expect(EdgeSchema.parse({ host: 'edge.lab.test' })).toMatchObject({ socket: '/run/haproxy/admin.sock', backend: 'trivy-vm-be', timeoutMs: 5000 })
    expect(EdgeSchema.safeParse({ host: 'edge.lab.test', socket: 'relative.sock' }).success).toBe(false)
    expect(EdgeSchema.safeParse({ host: 'edge.lab.test', backend: 'a;b' }).success).toBe(false)
    expect(EdgeSchema.safeParse({ host: 'edge lab' }).success).toBe(false)
    expect(readFileSync(join(dir, 'haproxy.cfg'), 'utf8')).toContain('level admin')
  })
})
