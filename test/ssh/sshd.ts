// A real OpenSSH server for the SSH layer's tests: /usr/sbin/sshd in the foreground on 127.0.0.1:<free port>,
// with its own host key, its own authorized_keys (for a generated client key), logging VERBOSE to a file.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { execa } from 'execa'
import { freePorts, portOpen } from '../../src/sandbox/proc.js'

const SSHD = '/usr/sbin/sshd'

export type SshdOptions = {
  /** Extra sshd_config lines (e.g. "SetEnv PATH=…"). */
  extraConfig?: string[]
  /** sshd LogLevel (default VERBOSE: logs connections and accepted keys). */
  logLevel?: string
}

export type Sshd = {
  host: '127.0.0.1'
  port: number
  user: string
  dir: string
  /** Client private key that authorized_keys accepts. */
  clientKey: string
  /** A second client key that is NOT authorized. */
  wrongKey: string
  hostKeyPub: string
  logFile: string
  /** `[127.0.0.1]:PORT ssh-ed25519 AAAA…` */
  knownHostsLine(): string
  /** SHA256 fingerprint of the current host key, as ssh-keygen prints it. */
  hostFingerprint(): Promise<string>
  log(): string
  /** Successful public key logins so far ("Accepted publickey" lines). */
  logins(): number
  /** TCP connections accepted so far ("Connection from" lines). */
  connections(): number
  /** Waits until the log shows at least N logins (sshd writes them asynchronously). */
  waitForLogins(n: number, timeoutMs?: number): Promise<number>
  /** New host key (same type), sshd restarted on the same port. */
  regenerateHostKey(): Promise<void>
  stop(): Promise<void>
}

async function keygen(path: string, comment: string): Promise<void> {
  rmSync(path, { force: true })
  rmSync(`${path}.pub`, { force: true })
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', path])
}

export async function startSshd(opts: SshdOptions = {}): Promise<Sshd> {
  const dir = mkdtempSync(join(tmpdir(), 'labctl-sshd-'))
  const [port] = (await freePorts(1)) as [number]
  const user = userInfo().username
  const hostKey = join(dir, 'ssh_host_ed25519_key')
  const clientKey = join(dir, 'client_key')
  const wrongKey = join(dir, 'wrong_key')
  const logFile = join(dir, 'sshd.log')
  const config = join(dir, 'sshd_config')
  await Promise.all([keygen(hostKey, 'labctl-test-host'), keygen(clientKey, 'labctl-test-client'), keygen(wrongKey, 'labctl-test-wrong')])
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(`${clientKey}.pub`), { mode: 0o600 })
  writeFileSync(
    config,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKey}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      `AllowUsers ${user}`,
      'StrictModes no',
      'UsePAM no',
      'PermitRootLogin prohibit-password',
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'AllowTcpForwarding yes',
      `LogLevel ${opts.logLevel ?? 'VERBOSE'}`,
      'Subsystem sftp internal-sftp',
      'MaxStartups 50',
      'MaxSessions 20',
      'PrintMotd no',
      ...(opts.extraConfig ?? []),
      '',
    ].join('\n'),
  )
  // sshd refuses to start without its privilege separation directory (normally made by the service unit).
  if (!existsSync('/run/sshd')) mkdirSync('/run/sshd', { recursive: true, mode: 0o755 })

  let child: ChildProcess | undefined
  const start = async (): Promise<void> => {
    const fd = openSync(logFile, 'a')
    try {
      child = spawn(SSHD, ['-D', '-e', '-f', config], { stdio: ['ignore', fd, fd], env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } })
    } finally {
      closeSync(fd)
    }
    const c = child
    let exited = false
    c.once('exit', () => {
      exited = true
    })
    const deadline = Date.now() + 10_000
    while (!(await portOpen(port))) {
      if (exited || Date.now() > deadline) {
        throw new Error(`sshd did not start on 127.0.0.1:${port}: ${readFileSync(logFile, 'utf8').slice(-2000)}`)
      }
      await sleep(50)
    }
  }
  const stopChild = async (): Promise<void> => {
    const c = child
    child = undefined
    if (!c || c.exitCode !== null || c.signalCode !== null) return
    const gone = new Promise<void>((resolve) => c.once('exit', () => resolve()))
    c.kill('SIGTERM')
    const t = setTimeout(() => c.kill('SIGKILL'), 3000)
    await gone
    clearTimeout(t)
  }
  await start()

  const log = (): string => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '')
  const count = (re: RegExp): number => log().split('\n').filter((l) => re.test(l)).length
  const logins = (): number => count(/Accepted publickey for /)
  return {
    host: '127.0.0.1',
    port,
    user,
    dir,
    clientKey,
    wrongKey,
    hostKeyPub: `${hostKey}.pub`,
    logFile,
    knownHostsLine: () => {
      const [type, b64] = readFileSync(`${hostKey}.pub`, 'utf8').trim().split(/\s+/)
      return `[127.0.0.1]:${port} ${type} ${b64}`
    },
    hostFingerprint: async () => {
      const r = await execa('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${hostKey}.pub`])
      return r.stdout.split(/\s+/)[1]!
    },
    log,
    logins,
    connections: () => count(/Connection from /),
    waitForLogins: async (n, timeoutMs = 3000) => {
      const deadline = Date.now() + timeoutMs
      while (logins() < n && Date.now() < deadline) await sleep(25)
      return logins()
    },
    regenerateHostKey: async () => {
      await stopChild()
      await keygen(hostKey, 'labctl-test-host-new')
      await start()
    },
    stop: async () => {
      await stopChild()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
