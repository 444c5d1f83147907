// SSH to the sandbox's edge machine, for the inventory's `edge:` section: a real OpenSSH sshd on the edge
// node for the runtime API socket: no shell (ForceCommand /bin/false), no remote forwarding, only local
// forwards (a stream to HAProxy's admin socket). labctl reaches the runtime API through it (src/edge), as on the lab's
// edge VM; the socket itself is never exposed on the network.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import { knownHostName } from '../ssh/known-hosts.js'
import type { SandboxPaths, SandboxState } from './layout.js'
import { hostPaths } from './host.js'
import { nodeAddr, onNode } from './nodes.js'
import { isAlive, portOpen, spawnDaemon, stopProcess, waitFor } from './proc.js'
import { LabctlError } from '../errors.js'

/** The edge's runtime API socket (`stats socket … level admin` in the sandbox's haproxy.cfg). */
export const edgeSocket = (p: SandboxPaths): string => join(p.dir, 'haproxy-admin.sock')

export function edgeSshPaths(p: SandboxPaths) {
  const d = join(p.dir, 'edge-ssh')
  return { dir: d, hostKey: join(d, 'ssh_host_ed25519_key'), authorized: join(d, 'authorized_keys'), knownHosts: join(d, 'known_hosts'), config: join(d, 'sshd_config'), log: join(p.logs, 'edge-sshd.log') }
}

/** The `edge:` section of the sandbox inventory (the operator's key is the sandbox's client key). */
export function sandboxEdgeSection(state: SandboxState, p: SandboxPaths): Record<string, unknown> | undefined {
  if (!state.edgeSsh) return undefined
  return {
    host: nodeAddr(state, 'edge'),
    ssh: { user: 'root', port: state.edgeSsh.port, identityFile: hostPaths(p).clientKey, knownHostsFile: edgeSshPaths(p).knownHosts, connectTimeoutMs: 5000 },
    socket: edgeSocket(p),
    backend: 'trivy-vm-be',
  }
}

export async function startEdgeSsh(state: SandboxState, p: SandboxPaths, port: number): Promise<void> {
  const e = edgeSshPaths(p)
  mkdirSync(e.dir, { recursive: true, mode: 0o700 })
  if (!existsSync(e.hostKey)) await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'edge host key', '-f', e.hostKey], { timeout: 20_000 })
  writeFileSync(e.authorized, readFileSync(`${hostPaths(p).clientKey}.pub`), { mode: 0o600 })
  const addr = nodeAddr(state, 'edge')
  const [type, key] = readFileSync(`${e.hostKey}.pub`, 'utf8').trim().split(/\s+/)
  writeFileSync(e.knownHosts, `${knownHostName(addr, port)} ${type} ${key}\n`, { mode: 0o600 })
  writeFileSync(
    e.config,
    [
      `# labctl sandbox: sshd on the edge machine (${addr}), for the runtime API socket only`,
      `ListenAddress ${addr}:${port}`,
      `HostKey ${e.hostKey}`,
      'PidFile none',
      `AuthorizedKeysFile ${e.authorized}`,
      'AllowUsers root',
      'PermitRootLogin prohibit-password',
      'StrictModes no',
      'UsePAM no',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      // sshd ties stream forwarding to (local) TCP forwarding, and `PermitOpen none` would refuse the socket
      // too; the edge machine has no route off the lab /24, so a TCP forward reaches nothing new.
      'AllowTcpForwarding local',
      'PermitListen none',
      'AllowAgentForwarding no',
      'X11Forwarding no',
      'PermitTTY no',
      'AllowStreamLocalForwarding local',
      'ForceCommand /bin/false',
      'LogLevel VERBOSE',
      '',
    ].join('\n'),
    { mode: 0o600 },
  )
  // sshd's privilege-separation directory (Debian's; created if the machine has none).
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 })
  await stopProcess(state.edgeSsh?.pid)
  state.edgeSsh = { port, pid: spawnDaemon(...onNode(state, 'edge', '/usr/sbin/sshd', ['-D', '-f', e.config, '-E', e.log]), { log: join(p.logs, 'edge-sshd.out') }) }
  if (!(await waitFor(() => portOpen(port, addr), 10_000))) throw new LabctlError(`sandbox edge sshd did not start on ${addr}:${port}`, { suggestion: `see ${e.log}` })
}

export async function stopEdgeSsh(state: SandboxState): Promise<boolean> {
  const pid = state.edgeSsh?.pid
  if (!pid || !isAlive(pid)) return false
  await stopProcess(pid)
  return true
}
