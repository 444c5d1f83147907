// Network faults of the lab network (`sandbox up --net`): a node's cable pulled, the edge or the DNS
// server down, a firewall rule between the edge and the listener, SSH to trivy-0 cut after a delay.
// Each is a real change in the lab's namespaces (links, processes, nftables), undone by heal.
import { writeFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { join } from 'node:path'
import { execa } from 'execa'
import { LabctlError, UsageError, oneLine } from '../errors.js'
import { httpRequest, labAgent } from '../net/http.js'
import { SANDBOX_NAMES, sandboxPaths, type SandboxState } from './layout.js'
import { NODES, type NodeName } from './netns.js'
import { isAlive, portOpen, spawnDaemon, stopProcess, waitFor } from './proc.js'

/** The network faults and what each does; they need the lab network. */
export const NET_FAULTS = {
  'link-down': "a node's link is down (its port on the lab switch): NODE is unreachable, e.g. `sandbox break link-down trivy-0`",
  'edge-down': 'HAProxy on the edge is stopped: the public name resolves, nothing answers on :443 (refused)',
  'dns-down': 'the lab DNS server (dnsmasq on the dns node) is stopped: lab names no longer resolve',
  'firewall-closed': "an nftables rule in trivy-0's namespace drops the edge's packets to the listener: 503 at the edge, direct still answers",
  'ssh-cut': "SSH traffic to trivy-0 is dropped (nftables in its namespace), after --after DURATION (0-600 s), until heal: it can land mid-step",
} as const
export type NetFault = keyof typeof NET_FAULTS

/** The longest --after the ssh-cut timer accepts. */
export const SSH_CUT_MAX_DELAY_MS = 600_000
const FAULT_TABLE = 'labctl_fault_firewall'
const SSH_CUT_TABLE = 'labctl_fault_ssh_cut'

export function isNetFault(f: string): f is NetFault {
  return f in NET_FAULTS
}

/** Parses `--after`: `2s`, `500ms`, `1m` or plain seconds; bounded to 0…600 s. */
export function parseDelay(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim())
  if (!m) throw new UsageError(`--after "${text}" is not a duration`, { suggestion: 'give e.g. 2s, 500ms or 1m' })
  const n = Number(m[1])
  const ms = m[2] === 'ms' ? n : m[2] === 'm' ? n * 60_000 : n * 1000
  if (ms > SSH_CUT_MAX_DELAY_MS) throw new UsageError(`--after ${text} is longer than 600 s`, { suggestion: 'give a delay of at most 10m' })
  return Math.round(ms)
}

function requireNet(state: SandboxState, f: NetFault): NonNullable<SandboxState['net']> {
  if (!state.net) {
    throw new LabctlError(`fault ${f} needs the lab network; this sandbox runs on 127.0.0.1`, {
      code: 'SANDBOX_NOT_NET',
      suggestion: '`labctl sandbox down && labctl sandbox up --net`',
    })
  }
  return state.net
}

async function run(argv: string[], what: string, input?: string): Promise<void> {
  const r = await execa(argv[0]!, argv.slice(1), { timeout: 10_000, reject: false, ...(input !== undefined ? { input } : { stdin: 'ignore' }) })
  if (r.exitCode !== 0) throw new LabctlError(`sandbox fault: ${what} failed: ${oneLine(String(r.stderr || r.stdout), 200)}`, { suggestion: '`labctl sandbox heal --all`, or `labctl sandbox down && labctl sandbox up --net`' })
}

const inNs = (ns: string): string[] => ['nsenter', `--net=/run/netns/${ns}`, '--']

async function setPort(state: SandboxState, node: NodeName, up: boolean): Promise<void> {
  const net = state.net!
  await run(['ip', '-n', net.switchNs, 'link', 'set', net.nodes[node].port, up ? 'up' : 'down'], `setting ${node}'s link ${up ? 'up' : 'down'}`)
}

/** The ruleset that drops the edge's packets to the listener port (its own table: the managed one stays as install wrote it). */
export function firewallClosedRuleset(edge: string, port: number): string {
  return `table inet ${FAULT_TABLE} {\n  chain input {\n    type filter hook input priority -20; policy accept;\n    ip saddr ${edge} tcp dport ${port} drop\n  }\n}\n`
}

/** The ruleset that drops SSH both ways on trivy-0: new connections and the ones already open. */
export function sshCutRuleset(port: number): string {
  return `table inet ${SSH_CUT_TABLE} {\n  chain input {\n    type filter hook input priority -20; policy accept;\n    tcp dport ${port} drop\n  }\n  chain output {\n    type filter hook output priority -20; policy accept;\n    tcp sport ${port} drop\n  }\n}\n`
}

async function deleteTable(ns: string, table: string): Promise<void> {
  // Absent already (never loaded, or healed): nothing to do.
  await execa(inNs(ns)[0]!, [...inNs(ns).slice(1), 'nft', 'delete', 'table', 'inet', table], { timeout: 10_000, reject: false, stdin: 'ignore' })
}

export type NetFaultDeps = { edgeHealthy: (s: SandboxState) => Promise<boolean>; stop: (name: 'haproxy' | 'dns', s: SandboxState) => Promise<void> }

/** The status the edge answers /healthz with by the public name (undefined: no answer within 1 s). */
async function edgeStatus(state: SandboxState): Promise<number | undefined> {
  const p = sandboxPaths(state.dir)
  const dns = `${state.net!.nodes.dns.address}:${state.ports.dns}`
  const agent = labAgent({ dnsServers: [dns], dnsTimeoutMs: 1000, caFile: p.caCert, connectTimeoutMs: 1000 })
  try {
    return (await httpRequest(`https://${SANDBOX_NAMES.publicName}:${state.ports.haproxy}/healthz`, { dispatcher: agent, timeoutMs: 1000 })).status
  } catch {
    return undefined
  } finally {
    await agent.close()
  }
}

export async function breakNet(state: SandboxState, f: NetFault, opts: { node?: string; afterMs?: number }, deps: NetFaultDeps): Promise<string> {
  const net = requireNet(state, f)
  const trivyNs = net.nodes['trivy-0'].ns
  switch (f) {
    case 'link-down': {
      const node = opts.node
      if (!node || !(NODES as readonly string[]).includes(node)) throw new UsageError(`link-down needs a node${node ? `, not "${node}"` : ''}`, { suggestion: `give one of: ${NODES.join(', ')} (e.g. \`labctl sandbox break link-down trivy-0\`)` })
      await setPort(state, node as NodeName, false)
      state.linkDown = [...new Set([...(state.linkDown ?? []), node as NodeName])]
      return `${NET_FAULTS[f]} — ${node} (${net.nodes[node as NodeName].address}) is down`
    }
    case 'edge-down':
      await deps.stop('haproxy', state)
      return NET_FAULTS[f]
    case 'dns-down':
      await deps.stop('dns', state)
      return NET_FAULTS[f]
    case 'firewall-closed': {
      await run([...inNs(trivyNs), 'nft', '-f', '-'], 'loading the firewall-closed rule', firewallClosedRuleset(net.nodes.edge.address, state.ports.trivy))
      // In effect once HAProxy's health check has marked the backend down (2 failed checks): the edge says 503.
      if (!(await waitFor(async () => (await edgeStatus(state)) === 503, 20_000, 250))) throw new LabctlError('the edge still reaches the listener after the firewall-closed rule', { suggestion: '`labctl sandbox exec trivy-0 -- nft list ruleset`' })
      return NET_FAULTS[f]
    }
    case 'ssh-cut': {
      const after = opts.afterMs ?? 0
      const p = sandboxPaths(state.dir)
      const file = join(p.dir, 'ssh-cut.nft')
      writeFileSync(file, sshCutRuleset(state.ports.host))
      if (after === 0) {
        await run([...inNs(trivyNs), 'nft', '-f', file], 'loading the ssh-cut rule')
        return `${NET_FAULTS[f]} — cut now`
      }
      if (state.sshCutPid && isAlive(state.sshCutPid)) await stopProcess(state.sshCutPid, 1000)
      // The timer runs in trivy-0's namespace (so `sandbox down` stops it with the node); one sleep, one nft.
      state.sshCutPid = spawnDaemon(inNs(trivyNs)[0]!, [...inNs(trivyNs).slice(1), 'sh', '-c', `sleep ${(after / 1000).toFixed(3)} && exec nft -f "$0"`, file], { log: join(p.logs, 'ssh-cut.log') })
      return `${NET_FAULTS[f]} — cut in ${after} ms`
    }
  }
}

export async function healNet(state: SandboxState, healed: string[], all: boolean, deps: { restart: (name: 'haproxy' | 'dns' | 'trivy', s: SandboxState) => Promise<void>; edgeHealthy: (s: SandboxState) => Promise<boolean> }): Promise<void> {
  const net = state.net
  if (!net) return
  const has = (f: NetFault): boolean => all || healed.includes(f)
  const trivyNs = net.nodes['trivy-0'].ns
  if (has('link-down')) {
    for (const n of all ? NODES : (state.linkDown ?? [])) await setPort(state, n, true)
    delete state.linkDown
  }
  if (has('ssh-cut')) {
    if (state.sshCutPid && isAlive(state.sshCutPid)) await stopProcess(state.sshCutPid, 1000)
    delete state.sshCutPid
    await deleteTable(trivyNs, SSH_CUT_TABLE)
  }
  if (has('firewall-closed')) await deleteTable(trivyNs, FAULT_TABLE)
  if (has('dns-down') && !(state.pids.dns && isAlive(state.pids.dns))) await deps.restart('dns', state)
  if (has('edge-down') && !(state.pids.haproxy && isAlive(state.pids.haproxy))) await deps.restart('haproxy', state)
  // After a link or a rule comes back, the neighbours relearn the address and HAProxy marks the backend up
  // again (rise 2 at 2 s): wait for both, bounded, so the next check sees the lab as it was.
  if (has('link-down') || has('firewall-closed')) {
    const trivy = net.nodes['trivy-0'].address
    const ok = async (): Promise<boolean> => (await portOpen(state.ports.trivy, trivy, 1000)) && (await deps.edgeHealthy(state))
    // Stable, not just once: health checks that failed while the link was down can still mark the server
    // down (fall 3 at 2 s) right after it came back, so it must still answer 6 s later.
    await waitFor(async () => (await ok()) && (await sleep(6000).then(ok)), 45_000, 250)
  }
}
