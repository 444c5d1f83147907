// A throw-away OpenSSH server on 127.0.0.1 for bench/check.mjs when the sandbox cannot start: its own
// host key and client key, the current user allowed, no PAM (like the sandbox's trivy-0).
import { spawn, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, openSync, closeSync } from 'node:fs'
import { createServer, connect } from 'node:net'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

const freePort = () =>
  new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })

const portOpen = (port) =>
  new Promise((resolve) => {
    const c = connect({ host: '127.0.0.1', port, timeout: 500 })
    c.once('connect', () => (c.destroy(), resolve(true)))
    c.once('error', () => resolve(false))
    c.once('timeout', () => (c.destroy(), resolve(false)))
  })

export async function startSshd() {
  const dir = mkdtempSync(join(tmpdir(), 'labctl-bench-sshd-'))
  const port = await freePort()
  const user = userInfo().username
  const hostKey = join(dir, 'host_key')
  const clientKey = join(dir, 'client_key')
  for (const k of [hostKey, clientKey]) {
    const r = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', k], { timeout: 20_000 })
    if (r.status !== 0) throw new Error(`ssh-keygen failed: ${r.stderr}`)
  }
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(`${clientKey}.pub`), { mode: 0o600 })
  const [type, key] = readFileSync(`${hostKey}.pub`, 'utf8').trim().split(/\s+/)
  const knownHosts = join(dir, 'known_hosts')
  writeFileSync(knownHosts, `[127.0.0.1]:${port} ${type} ${key}\n`)
  const config = join(dir, 'sshd_config')
  writeFileSync(
    config,
    [`Port ${port}`, 'ListenAddress 127.0.0.1', `HostKey ${hostKey}`, 'PidFile none', `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`, `AllowUsers ${user}`, 'StrictModes no', 'UsePAM no', 'PermitRootLogin prohibit-password', 'PasswordAuthentication no', 'KbdInteractiveAuthentication no', 'LogLevel ERROR', 'MaxStartups 50', 'Subsystem sftp internal-sftp', ''].join('\n'),
  )
  if (!existsSync('/run/sshd')) mkdirSync('/run/sshd', { recursive: true, mode: 0o755 })
  const fd = openSync(join(dir, 'sshd.log'), 'a')
  const child = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', config], { stdio: ['ignore', fd, fd] })
  closeSync(fd)
  const deadline = Date.now() + 10_000
  while (!(await portOpen(port))) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`sshd did not start: ${readFileSync(join(dir, 'sshd.log'), 'utf8').slice(-500)}`)
    await sleep(50)
  }
  return {
    port,
    user,
    clientKey,
    knownHosts,
    dir,
    async stop() {
      if (child.exitCode === null) {
        const gone = new Promise((r) => child.once('exit', r))
        child.kill('SIGTERM')
        await Promise.race([gone, sleep(3000)])
      }
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
