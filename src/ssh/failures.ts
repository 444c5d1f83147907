// Turning what ssh2, the socket and sudo report into one-line LabctlErrors that say what to do next.
import { LabctlError, oneLine } from '../errors.js'
import type { HostKeyInfo, KnownHostEntry } from './known-hosts.js'

export type SshErrorContext = {
  /** "trivy-0 (root@10.0.0.5:22)" */
  label: string
  host: string
  port: number
  user: string
  timeoutMs: number
  /** Human-readable authentication attempts, in order. */
  triedAuth?: string[]
  /** Methods the server said it accepts (from its last USERAUTH_FAILURE). */
  serverMethods?: string[]
  /** "via jump host bastion:22" */
  via?: string
}

const SUDO_PASSWORD = /a password is required|a terminal is required to read the password|no tty present and no askpass program/i
const SUDO_DENIED = /is not in the sudoers file|is not allowed to (execute|run sudo)|may not run sudo/i
const SUDO_MISSING = /(^|\s)sudo: (command )?not found|sudo: No such file/i

/**
 * sudo's own failures (as opposed to the command's) recognised from its stderr; undefined when the stderr
 * is not sudo complaining. labctl always runs `sudo -n`, so a password prompt becomes "a password is required".
 */
export function sudoFailure(stderr: string, ctx: { host: string; user: string; exitCode?: number }): LabctlError | undefined {
  const line = stderr.split('\n').find((l) => SUDO_PASSWORD.test(l) || SUDO_DENIED.test(l) || SUDO_MISSING.test(l))
  if (line === undefined) return undefined
  const nopasswd = `${ctx.user} ALL=(ALL) NOPASSWD: ALL`
  if (SUDO_PASSWORD.test(line)) {
    return new LabctlError(`sudo on ${ctx.host} wants a password for ${ctx.user} (labctl only runs sudo -n, never interactively)`, {
      code: 'SSH_SUDO_PASSWORD',
      suggestion: `allow passwordless sudo for ${ctx.user} on ${ctx.host}: "visudo -f /etc/sudoers.d/labctl" with the line "${nopasswd}" (or a narrower command list), or set sudo: false for this host if it needs no privileges`,
    })
  }
  if (SUDO_DENIED.test(line)) {
    return new LabctlError(`${ctx.user} may not use sudo on ${ctx.host}: ${oneLine(line, 200)}`, {
      code: 'SSH_SUDO_DENIED',
      suggestion: `grant ${ctx.user} passwordless sudo on ${ctx.host} ("${nopasswd}" in /etc/sudoers.d/labctl), or connect as a user who has it (ssh.user in the inventory)`,
    })
  }
  if (ctx.exitCode === undefined || ctx.exitCode === 127) {
    return new LabctlError(`sudo is not installed on ${ctx.host}`, {
      code: 'SSH_SUDO_MISSING',
      suggestion: `install sudo on ${ctx.host} (apt-get install sudo) and allow ${ctx.user} NOPASSWD, or connect as root`,
    })
  }
  return undefined
}

export function hostKeyUnknownError(ctx: SshErrorContext, offered: HostKeyInfo, knownHostsFile: string): LabctlError {
  return new LabctlError(
    `host key of ${ctx.label} is not known: ${offered.label} ${offered.fingerprint} (not in ${knownHostsFile})`,
    {
      code: 'SSH_HOSTKEY_UNKNOWN',
      suggestion: `check that fingerprint out of band (on the host: ssh-keygen -lf /etc/ssh/ssh_host_${offered.label.toLowerCase().replace(/-sk$/, '')}_key.pub), then rerun with --accept-new-host-key to record it`,
    },
  )
}

export function hostKeyChangedError(ctx: SshErrorContext, offered: HostKeyInfo, known: KnownHostEntry[]): LabctlError {
  const old = known.map((e) => `${e.key.label} ${e.key.fingerprint} (${e.file}:${e.line})`).join(', ')
  const first = known[0]
  return new LabctlError(
    `HOST KEY CHANGED for ${ctx.label}: known ${old}, offered ${offered.label} ${offered.fingerprint}; refusing to connect (possible man-in-the-middle)`,
    {
      code: 'SSH_HOSTKEY_CHANGED',
      suggestion: `if ${ctx.host} was really reinstalled, verify the new fingerprint out of band, then remove the old entry (ssh-keygen -R '${ctx.port === 22 ? ctx.host : `[${ctx.host}]:${ctx.port}`}'${first ? ` -f ${first.file}` : ''}) and connect again with --accept-new-host-key; --accept-new-host-key alone never replaces a known key`,
    },
  )
}

export function hostKeyRevokedError(ctx: SshErrorContext, offered: HostKeyInfo, entry: KnownHostEntry): LabctlError {
  return new LabctlError(`host key of ${ctx.label} (${offered.label} ${offered.fingerprint}) is marked @revoked in ${entry.file}:${entry.line}`, {
    code: 'SSH_HOSTKEY_REVOKED',
    suggestion: `the host must get a new host key; do not connect until it has one`,
  })
}

function describeVia(ctx: SshErrorContext): string {
  return ctx.via ? ` ${ctx.via}` : ''
}

/** ssh2 / socket error during connect → LabctlError. */
export function connectError(err: unknown, ctx: SshErrorContext): LabctlError {
  if (err instanceof LabctlError) return err
  const e = err as NodeJS.ErrnoException & { level?: string }
  const code = e?.code
  const msg = e instanceof Error ? e.message : String(err)
  const where = `${ctx.host}:${ctx.port}${describeVia(ctx)}`
  const opts = (c: string, suggestion: string): { code: string; suggestion: string; cause: unknown } => ({ code: c, suggestion, cause: err })
  if (code === 'ECONNREFUSED' || /Connection refused/i.test(msg)) {
    return new LabctlError(
      `connection refused by ${where} (${ctx.label})`,
      opts('SSH_CONN_REFUSED', `check that sshd runs on ${ctx.host} and listens on port ${ctx.port} (ssh.port in the inventory, Port in ~/.ssh/config)`),
    )
  }
  if (e?.level === 'client-timeout' || code === 'ETIMEDOUT' || /timed out/i.test(msg)) {
    return new LabctlError(
      `no SSH answer from ${where} within ${ctx.timeoutMs} ms (${ctx.label})`,
      opts(
        'SSH_TIMEOUT',
        `check that ${ctx.host} is up and port ${ctx.port} is reachable from here (firewall, VPN, jump host) and that an SSH server answers there; raise ssh.connectTimeoutMs for a slow link`,
      ),
    )
  }
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || /No route to host|Network is unreachable/i.test(msg)) {
    return new LabctlError(
      `${ctx.host} is unreachable${describeVia(ctx)} (${code ?? oneLine(msg, 80)})`,
      opts('SSH_UNREACHABLE', `check the network path to ${ctx.host} (routing, VPN, ssh.jumpHost in the inventory)`),
    )
  }
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || /getaddrinfo/i.test(msg)) {
    return new LabctlError(
      `cannot resolve ${ctx.host}${describeVia(ctx)} (${code ?? 'DNS'})`,
      opts('SSH_DNS', `check DNS for ${ctx.host}, or give its address (address in the inventory, or HostName in ~/.ssh/config)`),
    )
  }
  if (e?.level === 'client-authentication') {
    const tried = ctx.triedAuth && ctx.triedAuth.length > 0 ? ctx.triedAuth.join('; ') : 'nothing'
    const accepts = ctx.serverMethods && ctx.serverMethods.length > 0 ? `; server accepts: ${ctx.serverMethods.join(',')}` : ''
    return new LabctlError(
      `authentication refused by ${ctx.user}@${where} (tried: ${tried}${accepts})`,
      opts(
        'SSH_AUTH_REFUSED',
        `check that the public key is in ~${ctx.user}/.ssh/authorized_keys on ${ctx.host} and that ssh.user / ssh.identityFile in the inventory (or ssh-add for the agent) are right`,
      ),
    )
  }
  if (code === 'ECONNRESET' || code === 'EPIPE' || /closed|reset|lost before handshake/i.test(msg)) {
    return new LabctlError(
      `${where} closed the connection during the SSH handshake (${ctx.label})`,
      opts('SSH_CLOSED', `check sshd's log on ${ctx.host} (AllowUsers, MaxStartups, a firewall or fail2ban dropping us)`),
    )
  }
  return new LabctlError(
    `SSH connection to ${ctx.label}${describeVia(ctx)} failed: ${oneLine(msg, 200)}`,
    opts('SSH_CONNECT_FAILED', `check the host and its sshd log; rerun with LABCTL_DEBUG=1 for details`),
  )
}
