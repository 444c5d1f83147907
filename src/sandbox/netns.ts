// The lab as a network: one Linux network namespace per machine, joined by a bridge that lives in a
// namespace of its own (the "switch"), on one /24 taken from 198.18.0.0/15 (RFC 2544, reserved for
// testing). The operator's workstation (the machine labctl runs on) gets exactly one link and one
// route into that /24; nothing else on the machine changes. No node has a default route, nothing is
// forwarded or NATed: lab traffic cannot leave the machine.
import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { execa } from 'execa'
import { LabctlError, oneLine } from '../errors.js'

/** The lab's machines, each a network namespace with one address. */
export const NODES = ['edge', 'trivy-0', 'dns', 'registry', 'jenkins', 'agent', 'outsider', 'redis', 'monitor'] as const
export type NodeName = (typeof NODES)[number]
/** The last octet of each machine's address; .1 is the workstation's end of the lab link. */
export const HOST_OCTET: Record<NodeName | 'workstation', number> = {
  workstation: 1,
  edge: 2,
  dns: 3,
  registry: 4,
  jenkins: 5,
  redis: 6,
  // Prometheus (the monitoring tests): scrapes the exporter on the workstation's lab address and the edge.
  monitor: 7,
  'trivy-0': 10,
  agent: 20,
  outsider: 30,
}
const SHORT: Record<NodeName | 'workstation', string> = { workstation: 'w', edge: 'e', 'trivy-0': 't', dns: 'd', registry: 'r', jenkins: 'j', agent: 'a', outsider: 'o', redis: 'x', monitor: 'm' }
/** Every name the lab creates starts with this, then the lab's id: `lab-1a2b3c-…`. */
export const NAME_PREFIX = 'lab-'
/** The testing range the lab's /24 comes from: 198.18.0.0/24 … 198.19.255.0/24 (512 candidates). */
export const LAB_RANGE = '198.18.0.0/15'
const IFNAMSIZ = 15

export type NetNode = { ns: string; address: string; /** its end of the veth, inside the switch namespace */ port: string }
export type NetState = {
  id: string
  /** e.g. 198.18.7.0/24 */
  subnet: string
  /** The switch namespace holding the bridge. */
  switchNs: string
  bridge: string
  /** The workstation's one link into the lab (in the machine's own namespace) and its address. */
  link: string
  workstation: string
  nodes: Record<NodeName, NetNode>
}

async function ip(args: string[], opts: { ns?: string; timeoutMs?: number } = {}): Promise<{ ok: boolean; out: string; err: string }> {
  const r = await execa('ip', [...(opts.ns ? ['-n', opts.ns] : []), ...args], { timeout: opts.timeoutMs ?? 10_000, reject: false, stdin: 'ignore' })
  return { ok: r.exitCode === 0, out: String(r.stdout), err: String(r.stderr) }
}

async function must(args: string[], opts: { ns?: string } = {}): Promise<string> {
  const r = await ip(args, opts)
  if (!r.ok) {
    throw new LabctlError(`sandbox network: \`ip ${opts.ns ? `-n ${opts.ns} ` : ''}${args.join(' ')}\` failed: ${oneLine(r.err || r.out, 200)}`, {
      code: 'SANDBOX_NET',
      suggestion: 'run `labctl sandbox down` to remove what was made, then `labctl sandbox up` again',
    })
  }
  return r.out
}

/** Runs a sysctl inside a namespace by writing /proc/sys there (no sysctl binary needed). */
async function nsSysctl(ns: string, key: string, value: string): Promise<void> {
  await execa('nsenter', [`--net=/run/netns/${ns}`, '--', 'sh', '-c', `echo ${value} > /proc/sys/${key.replaceAll('.', '/')}`], { timeout: 10_000, reject: false, stdin: 'ignore' })
}

const CAP_NET_ADMIN = 12n
const CAP_SYS_ADMIN = 21n

/** Whether this process may create namespaces and links (CAP_NET_ADMIN and CAP_SYS_ADMIN, i.e. root). */
export function netCapable(status = readFileSync('/proc/self/status', 'utf8')): { ok: boolean; missing: string[] } {
  const hex = /^CapEff:\s*([0-9a-f]+)/m.exec(status)?.[1] ?? '0'
  const eff = BigInt(`0x${hex}`)
  const missing = [
    ...((eff >> CAP_NET_ADMIN) & 1n ? [] : ['CAP_NET_ADMIN']),
    ...((eff >> CAP_SYS_ADMIN) & 1n ? [] : ['CAP_SYS_ADMIN']),
  ]
  return { ok: missing.length === 0, missing }
}

export function requireNetCapable(): void {
  const c = netCapable()
  if (!c.ok) {
    throw new LabctlError(`the sandbox lab network needs root (${c.missing.join(' and ')} missing): it creates network namespaces, links and one route`, {
      code: 'SANDBOX_NEEDS_ROOT',
      suggestion: 'run `sudo labctl sandbox up` (or as root); without root, `labctl sandbox up --loopback` runs every part on 127.0.0.1',
    })
  }
}

/** The names a lab with this id uses (all ≤ 15 characters, the kernel's IFNAMSIZ). */
export function netNames(id: string): { switchNs: string; bridge: string; link: string; peer: string; ns: (n: NodeName) => string; port: (n: NodeName) => string } {
  const base = `${NAME_PREFIX}${id}`
  const names = {
    switchNs: `${base}-sw`,
    bridge: `${base}-br`,
    link: `${base}-${SHORT.workstation}`,
    peer: `${base}-${SHORT.workstation}p`,
    ns: (n: NodeName) => `${base}-${n}`,
    port: (n: NodeName) => `${base}-${SHORT[n]}`,
  }
  for (const l of [names.bridge, names.link, names.peer, ...NODES.map(names.port)]) if (l.length > IFNAMSIZ) throw new Error(`link name too long: ${l}`)
  return names
}

/** The /24s already routed or addressed on the machine (any table), as "a.b.c". */
async function usedPrefixes(): Promise<Set<string>> {
  const used = new Set<string>()
  const routes = await ip(['-4', '-j', 'route', 'show', 'table', 'all'])
  const addrs = await ip(['-4', '-j', 'addr', 'show'])
  const add = (cidrOrAddr: string | undefined): void => {
    const m = /^(198\.1[89]\.\d+)\./.exec(cidrOrAddr ?? '')
    if (m?.[1]) used.add(m[1])
  }
  try {
    for (const r of JSON.parse(routes.out || '[]') as Array<{ dst?: string }>) add(r.dst)
    for (const l of JSON.parse(addrs.out || '[]') as Array<{ addr_info?: Array<{ local?: string }> }>) for (const a of l.addr_info ?? []) add(a.local)
  } catch {
    /* unparsable: rely on the route add below failing */
  }
  return used
}

function candidates(start: number): string[] {
  const all = Array.from({ length: 512 }, (_, i) => `198.${18 + (i >> 8)}.${i & 255}`)
  return [...all.slice(start % 512), ...all.slice(0, start % 512)]
}

/**
 * Creates the lab network: switch namespace + bridge, one namespace per node with its veth and address,
 * and the workstation's link and route. The /24 is claimed by adding its route: the kernel refuses a
 * second route to the same /24, so two sandboxes starting at once cannot take the same one.
 */
export async function netUp(opts: { id?: string } = {}): Promise<NetState> {
  requireNetCapable()
  // The switch namespace is created first and is the lab's claim on its id: an id already in use (another
  // lab's) is never touched, a fresh one is tried instead (bounded).
  let id = opts.id ?? randomBytes(3).toString('hex')
  for (let attempt = 0; ; attempt++) {
    const r = await ip(['netns', 'add', netNames(id).switchNs])
    if (r.ok) break
    if (opts.id || attempt >= 4 || !/exists/i.test(r.err)) {
      throw new LabctlError(`sandbox network: cannot create namespace ${netNames(id).switchNs}: ${oneLine(r.err, 200)}`, { code: 'SANDBOX_NET', suggestion: 'check `ip netns list`; `labctl sandbox down` removes a lab it made' })
    }
    id = randomBytes(3).toString('hex')
  }
  try {
    return await makeNet(id)
  } catch (err) {
    // All or nothing: a half-made lab network is removed before the error is reported.
    await netDown(id).catch(() => undefined)
    throw err
  }
}

async function makeNet(id: string): Promise<NetState> {
  const n = netNames(id)
  // 1. The switch (its namespace is already made): a bridge; the workstation's veth has its peer there.
  await must(['link', 'add', n.bridge, 'type', 'bridge'], { ns: n.switchNs })
  await nsSysctl(n.switchNs, 'net.ipv6.conf.all.disable_ipv6', '1')
  await must(['link', 'set', n.bridge, 'up'], { ns: n.switchNs })
  await must(['link', 'add', n.link, 'type', 'veth', 'peer', 'name', n.peer, 'netns', n.switchNs])
  await must(['link', 'set', n.peer, 'master', n.bridge, 'up'], { ns: n.switchNs })
  // No IPv6 on the workstation's link: no link-local route or router solicitation on the machine.
  await execa('sh', ['-c', `echo 1 > /proc/sys/net/ipv6/conf/${n.link}/disable_ipv6`], { timeout: 5000, reject: false })
  await must(['link', 'set', n.link, 'up'])
  // 2. Claim a free /24: the route is the claim.
  const used = await usedPrefixes()
  let prefix: string | undefined
  for (const c of candidates(Number.parseInt(id, 16))) {
    if (used.has(c)) continue
    const addr = `${c}.${HOST_OCTET.workstation}`
    // The address without its automatic prefix route, then the route: that second step is the claim.
    await must(['addr', 'add', `${addr}/24`, 'dev', n.link, 'noprefixroute'])
    const r = await ip(['route', 'add', `${c}.0/24`, 'dev', n.link, 'src', addr, 'proto', 'static', 'scope', 'link'])
    if (r.ok) {
      prefix = c
      break
    }
    await ip(['addr', 'del', `${addr}/24`, 'dev', n.link])
    if (!/File exists/i.test(r.err)) throw new LabctlError(`sandbox network: cannot add the lab route: ${oneLine(r.err, 200)}`, { code: 'SANDBOX_NET' })
  }
  if (!prefix) throw new LabctlError(`sandbox network: every /24 of ${LAB_RANGE} is in use on this machine`, { code: 'SANDBOX_NET', suggestion: 'run `labctl sandbox down` for labs no longer needed' })
  // 3. One namespace per node: loopback up, eth0 with its address, its veth peer on the bridge.
  const nodes = {} as Record<NodeName, NetNode>
  for (const node of NODES) {
    const ns = n.ns(node)
    const address = `${prefix}.${HOST_OCTET[node]}`
    await must(['netns', 'add', ns])
    await nsSysctl(ns, 'net.ipv6.conf.all.disable_ipv6', '1')
    await must(['link', 'set', 'lo', 'up'], { ns })
    await must(['link', 'add', n.port(node), 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns], { ns: n.switchNs })
    await must(['link', 'set', n.port(node), 'master', n.bridge, 'up'], { ns: n.switchNs })
    await must(['addr', 'add', `${address}/24`, 'dev', 'eth0'], { ns })
    await must(['link', 'set', 'eth0', 'up'], { ns })
    nodes[node] = { ns, address, port: n.port(node) }
  }
  return { id, subnet: `${prefix}.0/24`, switchNs: n.switchNs, bridge: n.bridge, link: n.link, workstation: `${prefix}.${HOST_OCTET.workstation}`, nodes }
}

/**
 * Whether the workstation's lab link still exists. Without it the lab's addresses would be routed by the
 * machine's default route, off the machine: nothing may probe a lab address then.
 */
export function netPresent(net: Pick<NetState, 'link'>): boolean {
  return existsSync(`/sys/class/net/${net.link}`)
}

/** PIDs of processes whose network namespace is this one. */
export async function nsPids(ns: string): Promise<number[]> {
  const r = await ip(['netns', 'pids', ns])
  return r.ok ? r.out.split(/\s+/).filter(Boolean).map(Number).filter((p) => p > 0 && p !== process.pid) : []
}

function kill(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig)
  } catch {
    /* gone */
  }
}

/** What of a lab with this id still exists on the machine: namespaces, links, routes. */
export async function netLeftovers(id: string): Promise<string[]> {
  const base = `${NAME_PREFIX}${id}-`
  const left: string[] = []
  const nsList = await ip(['netns', 'list'])
  for (const line of nsList.out.split('\n')) {
    const name = line.split(/\s+/)[0]
    if (name?.startsWith(base)) left.push(`netns ${name}`)
  }
  const links = await ip(['-o', 'link', 'show'])
  for (const line of links.out.split('\n')) {
    const name = /^\d+:\s+([^:@\s]+)/.exec(line)?.[1]
    if (name?.startsWith(base)) left.push(`link ${name}`)
  }
  const routes = await ip(['-4', 'route', 'show', 'table', 'all'])
  for (const line of routes.out.split('\n')) if (line.includes(`dev ${base}`)) left.push(`route ${line.trim()}`)
  return left
}

/**
 * Removes everything netUp made for this id: stops any process left in a node's namespace (TERM, then
 * KILL, bounded), deletes the namespaces (their veths and the bridge go with them) and the workstation
 * link (its route goes with it). Safe to run twice or on a half-made lab.
 */
export async function netDown(id: string): Promise<{ removed: string[]; leftover: string[] }> {
  const n = netNames(id)
  const removed: string[] = []
  const spaces = [...NODES.map(n.ns), n.switchNs]
  const present = new Set((await ip(['netns', 'list'])).out.split('\n').map((l) => l.split(/\s+/)[0]))
  for (const ns of spaces.filter((s) => present.has(s))) {
    let pids = await nsPids(ns)
    for (const p of pids) kill(p, 'SIGTERM')
    for (let i = 0; i < 50 && pids.length; i++) {
      await sleep(50)
      pids = await nsPids(ns)
    }
    for (const p of pids) kill(p, 'SIGKILL')
    for (let i = 0; i < 40 && (await nsPids(ns)).length; i++) await sleep(50)
  }
  const link = await ip(['link', 'del', n.link])
  if (link.ok) removed.push(`link ${n.link}`)
  for (const ns of spaces.filter((s) => present.has(s))) {
    const r = await ip(['netns', 'del', ns])
    if (r.ok) removed.push(`netns ${ns}`)
  }
  // A veth's root end disappears a moment after its peer's namespace is gone: wait for it, bounded.
  let leftover = await netLeftovers(id)
  for (let i = 0; i < 40 && leftover.length; i++) {
    await sleep(50)
    leftover = await netLeftovers(id)
  }
  return { removed, leftover }
}

/** argv prefix that runs a command in a node's network namespace (only the network; files are shared). */
export function inNetns(ns: string): string[] {
  return ['nsenter', `--net=/run/netns/${ns}`, '--']
}
