// The lab network on its own (no sandbox processes): namespaces, bridge, one link and one route on the
// machine, and `down` leaving the machine exactly as it was.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { describe, expect, it, onTestFinished } from 'vitest'
import { writeState, type SandboxState } from '../../src/sandbox/layout.js'
import { HOST_OCTET, NODES, inNetns, netCapable, netDown, netLeftovers, netUp, type NetState } from '../../src/sandbox/netns.js'
import { LABCTL, labctl, parseJson } from '../helpers.js'
import { machine, probe, sh } from './netlab-helpers.js'

function listen(ns: string, host: string, port: number): Promise<() => Promise<void>> {
  const js = `require('net').createServer(s=>{s.on('error',()=>{});s.end('hi')}).listen(${port},${JSON.stringify(host)},()=>console.log('ready'))`
  const child = execa(inNetns(ns)[0]!, [...inNetns(ns).slice(1), process.execPath, '-e', js], { timeout: 60_000, reject: false })
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('listener did not start')), 10_000)
    child.stdout?.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) {
        clearTimeout(t)
        resolve(async () => {
          child.kill('SIGKILL')
          await child
        })
      }
    })
  })
}

describe('sandbox lab network (namespaces)', () => {
  it('reads CAP_NET_ADMIN / CAP_SYS_ADMIN from /proc/self/status', () => {
    expect(netCapable('CapEff:\t000001ffffffffff\n')).toEqual({ ok: true, missing: [] })
    expect(netCapable('CapEff:\t0000000000000000\n')).toEqual({ ok: false, missing: ['CAP_NET_ADMIN', 'CAP_SYS_ADMIN'] })
    // CAP_SYS_ADMIN (21) only
    expect(netCapable('CapEff:\t0000000000200000\n')).toEqual({ ok: false, missing: ['CAP_NET_ADMIN'] })
  })

  it('two labs coexist on their own /24s; the machine gains one link and one route each; down restores it', async () => {
    const before = await machine()
    const labs: NetState[] = []
    onTestFinished(async () => {
      for (const l of labs) await netDown(l.id)
    })
    const t0 = Date.now()
    labs.push(await netUp())
    const upMs = Date.now() - t0
    labs.push(await netUp())
    const [a, b] = labs as [NetState, NetState]
    process.stderr.write(`[netlab] one lab network up in ${upMs} ms\n`)

    expect(a.subnet).not.toBe(b.subnet)
    for (const l of labs) {
      expect(l.subnet).toMatch(/^198\.1[89]\.\d{1,3}\.0\/24$/)
      for (const node of NODES) expect(l.nodes[node].address).toBe(`${l.subnet.split('.').slice(0, 3).join('.')}.${HOST_OCTET[node]}`)
    }
    const during = await machine()
    const gained = (xs: string[], ys: string[]): string[] => ys.filter((y) => !xs.includes(y))
    // Per lab: 7 node namespaces + the switch; exactly one link and one route on the machine.
    expect(gained(before.netns, during.netns).sort()).toEqual([...labs.flatMap((l) => [...NODES.map((n) => l.nodes[n].ns), l.switchNs])].sort())
    expect(gained(before.links, during.links).sort()).toEqual([a.link, b.link].sort())
    // The one route per lab (main table); the kernel's local/broadcast entries are those of the link's one address.
    const newRoutes = gained(before.routes, during.routes)
    expect(newRoutes.filter((r) => !/^(local|broadcast) /.test(r)).map((r) => r.split(' ')[0]).sort()).toEqual([a.subnet, b.subnet].sort())
    for (const r of newRoutes.filter((x) => /^(local|broadcast) /.test(x))) expect(r).toMatch(new RegExp(`dev (${a.link}|${b.link}) `))
    expect(before.routes.filter((r) => !during.routes.includes(r))).toEqual([])
    for (const name of [a.link, a.bridge, ...NODES.map((n) => a.nodes[n].port)]) expect(name.length).toBeLessThanOrEqual(15)

    // A node has its subnet and nothing else: no default route, so nothing can leave the machine.
    const agentRoutes = (await sh(['ip', '-n', a.nodes.agent.ns, '-4', 'route', 'show', 'table', 'all'])).split('\n').filter((r) => !/ table local /.test(r) && r.trim())
    expect(agentRoutes.map((r) => r.split(' ')[0])).toEqual([a.subnet])
    expect(await probe(a.nodes.agent.ns, '192.0.2.1', 80)).toBe('unreachable')

    // An id already in use is refused and the lab holding it is left alone (the probes below still pass).
    await expect(netUp({ id: a.id })).rejects.toThrow(/cannot create namespace lab-[0-9a-f]{6}-sw/)
    expect((await machine()).netns).toEqual(during.netns)

    // Reachability: the workstation and another node reach a listener on the edge; the other lab does not.
    const stop = await listen(a.nodes.edge.ns, a.nodes.edge.address, 7443)
    onTestFinished(stop)
    expect(await probe(undefined, a.nodes.edge.address, 7443)).toBe('open')
    expect(await probe(a.nodes.agent.ns, a.nodes.edge.address, 7443)).toBe('open')
    expect(await probe(a.nodes.agent.ns, a.nodes.edge.address, 7444)).toBe('closed')
    expect(await probe(b.nodes.agent.ns, a.nodes.edge.address, 7443)).toBe('unreachable')
    expect((await machine()).listening).toEqual(before.listening)

    // down: with a process still in a namespace; everything goes, the machine is as before.
    const t1 = Date.now()
    for (const l of labs) expect((await netDown(l.id)).leftover).toEqual([])
    process.stderr.write(`[netlab] two lab networks down in ${Date.now() - t1} ms\n`)
    const after = await machine()
    expect(after).toEqual(before)
    for (const l of labs) expect(await netLeftovers(l.id)).toEqual([])
    expect((await netDown(a.id)).leftover).toEqual([])
  })
})

describe('sandbox exec and the root check', () => {
  it('`sandbox up` (the lab network by default) without CAP_NET_ADMIN stops at once with one line, exit 1, and makes nothing', async () => {
    const root = mkdtempSync(join(tmpdir(), 'labctl-nocap-'))
    onTestFinished(() => rmSync(root, { recursive: true, force: true }))
    const before = await machine()
    // Root without CAP_NET_ADMIN: the capability is dropped from the bounding set before labctl starts.
    const r = await execa('setpriv', ['--bounding-set', '-net_admin', '--inh-caps', '-net_admin', LABCTL, 'sandbox', 'up'], {
      reject: false,
      timeout: 60_000,
      env: { ...process.env, NO_COLOR: '1', XDG_CONFIG_HOME: join(root, 'config'), LABCTL_SANDBOX_DIR: join(root, 'sb') },
    })
    expect(r.exitCode).toBe(1)
    const lines = String(r.stderr).split('\n').filter((l) => l.startsWith('labctl: error:'))
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(/needs root \(CAP_NET_ADMIN missing\)/)
    // The next step names the escape hatch for a machine without root.
    expect(String(r.stderr)).toMatch(/next: .*sudo labctl sandbox up.*`labctl sandbox up --loopback`/)
    expect(String(r.stdout)).toBe('')
    expect(await machine()).toEqual(before)
  })

  it('runs a command inside a node: argv literal, exit code propagated, bad node is a usage error', async () => {
    const root = mkdtempSync(join(tmpdir(), 'labctl-exec-'))
    const net = await netUp()
    onTestFinished(async () => {
      await netDown(net.id)
      rmSync(root, { recursive: true, force: true })
    })
    // A lab network with no processes in it: enough for exec (it only needs the recorded namespaces).
    const dir = join(root, 'sb')
    const state: SandboxState = {
      version: 1, dir, startedAt: new Date().toISOString(), ports: { registry: 5000, dns: 53, host: 22, trivy: 4954, haproxy: 443 },
      pids: {}, dnsRecords: [], trivyVersion: '0.74.0', image: 'lab/vulnerable:1', inventoryPath: join(root, 'inv.yaml'), net,
    }
    writeState(state)
    const env = { LABCTL_SANDBOX_DIR: dir }
    const addr = await labctl(['sandbox', 'exec', 'agent', '--', 'ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0'], { env })
    expect(addr.exitCode, addr.stderr).toBe(0)
    expect(addr.stdout).toContain(`inet ${net.nodes.agent.address}/24`)
    const outsider = await labctl(['sandbox', 'exec', 'outsider', '--json', '--', 'ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0'], { env })
    expect(parseJson<{ stdout: string }>(outsider.stdout).stdout).toContain(`inet ${net.nodes.outsider.address}/24`)
    const literal = await labctl(['sandbox', 'exec', 'edge', '--', 'printf', '%s|', 'a b', '$HOME', ';', '--json'], { env })
    expect(literal.exitCode, literal.stderr).toBe(0)
    expect(literal.stdout).toBe('a b|$HOME|;|--json|')
    const code = await labctl(['sandbox', 'exec', 'dns', '--', 'sh', '-c', 'exit 7'], { env })
    expect(code.exitCode).toBe(7)
    const bad = await labctl(['sandbox', 'exec', 'nope', '--', 'true'], { env })
    expect(bad.exitCode).toBe(2)
    const none = await labctl(['sandbox', 'exec', 'agent'], { env })
    expect(none.exitCode).toBe(2)
    expect(none.stderr).toMatch(/nothing to run/)
  })
})
