// The sandbox's scanner host "trivy-0": a real OpenSSH server in a private mount namespace whose /etc,
// /usr and /var are overlays on the machine's own (writes land under the sandbox state dir, never in
// the real /etc, /usr or /var). Trivy runs there under the systemd stand-in, as on the VM.
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import { LabctlError, oneLine } from '../errors.js'
import { projectRoot, SANDBOX_NAMES, sandboxPaths, type SandboxPaths, type SandboxState } from './layout.js'
import { isAlive, spawnDaemon, stopProcess } from './proc.js'
import type { Tools } from './prereqs.js'
import { endpoint, nodeAddr, onNode } from './nodes.js'
import { knownHostName } from '../ssh/known-hosts.js'
import { renderUnit } from '../trivy/install-render.js'
import { sandboxInventoryParsed } from './inventory.js'

export const HOST_USER = 'labops'
/** A second login whose sudo asks for a password: tests that labctl says so instead of hanging. */
export const HOST_USER_SUDO_PW = 'labops-pw'
export const SERVICE = 'trivy-server'
export const ENV_FILE = '/etc/trivy/trivy-server.env'
export const CACHE_DIR = '/var/lib/trivy'
const STANDIN_STATE = '/var/lib/labctl-standin'

export function hostPaths(p: SandboxPaths) {
  const root = join(p.dir, 'host')
  return {
    root,
    ssh: join(root, 'ssh'),
    hostKey: join(root, 'ssh', 'ssh_host_ed25519_key'),
    clientKey: join(root, 'ssh', 'id_ed25519'),
    knownHosts: join(root, 'ssh', 'known_hosts'),
    sshdConfig: join(root, 'ssh', 'sshd_config'),
    sshdLog: join(p.logs, 'sshd.log'),
    overlay: (d: 'etc' | 'usr' | 'var') => ({ upper: join(root, `${d}-upper`), work: join(root, `${d}-work`) }),
  }
}

/** Runs a command inside the host's mount namespace as root (the sandbox's console, not SSH). */
export async function hostExec(state: SandboxState, argv: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<string> {
  const pid = state.pids.host
  if (!pid || !isAlive(pid)) throw new LabctlError('the sandbox host trivy-0 is not running', { suggestion: 'run `labctl sandbox up`' })
  // Its mount, UTS and network namespaces: in the lab network the host is a machine of its own.
  const r = await execa('nsenter', ['-t', String(pid), '-m', '-u', '-n', '--', ...argv], {
    timeout: opts.timeoutMs ?? 60_000,
    reject: false,
    ...(opts.input !== undefined ? { input: opts.input } : { stdin: 'ignore' }),
  })
  if (r.exitCode !== 0) {
    throw new LabctlError(`sandbox host: \`${argv[0]} ${argv[1] ?? ''}\` failed (exit ${r.exitCode}): ${oneLine(String(r.stderr || r.stdout), 300)}`)
  }
  return String(r.stdout)
}

/**
 * The env file the server reads: the token travels on stdin, never in an argv. An existing file keeps
 * every other line (e.g. the settings `labctl trivy install` wrote); only TRIVY_TOKEN changes.
 */
export async function writeHostEnv(state: SandboxState, token: string): Promise<void> {
  const current = await hostExec(state, ['sh', '-c', `cat ${ENV_FILE} 2>/dev/null || true`])
  let body: string
  if (current.trim()) {
    const lines = current.replace(/\n$/, '').split('\n')
    const i = lines.findIndex((l) => l.startsWith('TRIVY_TOKEN='))
    if (i >= 0) lines[i] = `TRIVY_TOKEN=${token}`
    else lines.push(`TRIVY_TOKEN=${token}`)
    body = `${lines.filter((l, j) => j === i || i < 0 || !l.startsWith('TRIVY_TOKEN=')).join('\n')}\n`
  } else {
    body = `# trivy-server environment (labctl sandbox)\nTRIVY_TOKEN=${token}\nTRIVY_SKIP_DB_UPDATE=true\nTRIVY_NO_PROGRESS=true\n`
  }
  await hostExec(state, ['sh', '-c', `umask 077 && mkdir -p /etc/trivy && cat > ${ENV_FILE}.tmp && chmod 0600 ${ENV_FILE}.tmp && mv ${ENV_FILE}.tmp ${ENV_FILE}`], { input: body })
}

/** Whether the host has the Trivy service (a bare host has none until `labctl trivy install`). */
export async function hostHasService(state: SandboxState): Promise<boolean> {
  return (await hostExec(state, ['sh', '-c', `test -f /etc/systemd/system/${SERVICE}.service && echo yes || echo no`])).trim() === 'yes'
}

/**
 * The host shares the machine's network namespace: a firewall rule there would change the CI machine's
 * firewall. `labctl trivy install` reads this marker and only plans firewall changes.
 */
export const FIREWALL_PLAN_ONLY = '/etc/labctl/firewall-plan-only'
const FIREWALL_PLAN_ONLY_REASON = "sandbox host: it shares the machine's network namespace, so its firewall is the CI machine's"

export async function readHostToken(state: SandboxState): Promise<string> {
  const text = await hostExec(state, ['cat', ENV_FILE])
  return (text.split('\n').find((l) => l.startsWith('TRIVY_TOKEN=')) ?? '').slice('TRIVY_TOKEN='.length).trim()
}

/** The Trivy unit of the sandbox: the one `labctl trivy install` writes for the sandbox inventory (heal restores it). */
export function unitFile(state: SandboxState): string {
  return renderUnit(sandboxInventoryParsed(state, sandboxPaths(state.dir)))
}

function sshdConfig(state: SandboxState, h: ReturnType<typeof hostPaths>): string {
  return `# labctl sandbox: sshd for the scanner host trivy-0 (${nodeAddr(state, 'trivy-0')} only)
ListenAddress ${endpoint(state, 'host')}
HostKey ${h.hostKey}
PidFile none
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PermitRootLogin no
AllowUsers ${HOST_USER} ${HOST_USER_SUDO_PW}
LogLevel VERBOSE
MaxSessions 20
MaxStartups 50:30:100
ClientAliveInterval 15
Subsystem sftp internal-sftp
`
}

/** Starts sshd in a new mount namespace with overlays on /etc, /usr and /var. */
export function startHost(state: SandboxState, p: SandboxPaths): number {
  const h = hostPaths(p)
  mkdirSync(h.ssh, { recursive: true, mode: 0o700 })
  const mounts = (['etc', 'usr', 'var'] as const)
    .map((d) => {
      const o = h.overlay(d)
      mkdirSync(o.upper, { recursive: true })
      mkdirSync(o.work, { recursive: true })
      return `mount -t overlay overlay -o lowerdir=/${d},upperdir=${o.upper},workdir=${o.work} /${d}`
    })
    .join(' && ')
  writeFileSync(h.sshdConfig, sshdConfig(state, h))
  // sshd needs its privilege-separation dir; it lives in the overlay, not in the machine's /run.
  const script = `hostname trivy-0 && ${mounts} && mount -t tmpfs tmpfs /run && mkdir -p /run/sshd && exec /usr/sbin/sshd -D -f ${h.sshdConfig} -E ${h.sshdLog}`
  return spawnDaemon(...onNode(state, 'trivy-0', 'unshare', ['--mount', '--uts', '--propagation', 'private', '--', '/bin/sh', '-c', script]), { log: join(p.logs, 'host.log') })
}

async function keygen(file: string, comment: string): Promise<void> {
  if (!existsSync(file)) await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file], { timeout: 20_000 })
}

export async function ensureKeys(p: SandboxPaths): Promise<void> {
  const h = hostPaths(p)
  mkdirSync(h.ssh, { recursive: true, mode: 0o700 })
  await keygen(h.hostKey, 'trivy-0 host key')
  await keygen(h.clientKey, 'labctl sandbox operator')
}

export function writeKnownHosts(state: SandboxState, p: SandboxPaths): void {
  const h = hostPaths(p)
  const [type, key] = readFileSync(`${h.hostKey}.pub`, 'utf8').trim().split(/\s+/)
  const names = [SANDBOX_NAMES.fqdn, SANDBOX_NAMES.alias, nodeAddr(state, 'trivy-0')].map((n) => knownHostName(n, state.ports.host)).join(',')
  writeFileSync(h.knownHosts, `${names} ${type} ${key}\n`, { mode: 0o600 })
}

/**
 * First boot of the host, a bare machine: users, sudo, the systemd stand-in, and none of the trivy parts
 * (no binary, no trivy user, no cache dir, no env file, no unit) — what a fresh VM looks like before
 * `labctl trivy install`, which `sandbox up` then runs (or, with --bare, leaves to the operator).
 */
export async function provisionHost(state: SandboxState, p: SandboxPaths): Promise<void> {
  const h = hostPaths(p)
  const standins = join(projectRoot(), 'test', 'standins', 'systemd')
  const pub = readFileSync(`${h.clientKey}.pub`, 'utf8')
  const home = `/var/lib/sandbox-home/${HOST_USER}`
  const script = [
    'set -e',
    `id -u ${HOST_USER} >/dev/null 2>&1 || useradd --create-home --home-dir ${home} --shell /bin/bash ${HOST_USER}`,
    // No password, but not locked: sshd refuses locked accounts even for keys.
    `usermod -p '*' ${HOST_USER}`,
    `mkdir -p ${home}/.ssh && cat > ${home}/.ssh/authorized_keys && chown -R ${HOST_USER}: ${home}/.ssh && chmod 700 ${home}/.ssh && chmod 600 ${home}/.ssh/authorized_keys`,
    `printf '%s\\n' '${HOST_USER} ALL=(ALL) NOPASSWD: ALL' '${HOST_USER_SUDO_PW} ALL=(ALL) ALL' > /etc/sudoers.d/labctl-sandbox && chmod 0440 /etc/sudoers.d/labctl-sandbox`,
    `id -u ${HOST_USER_SUDO_PW} >/dev/null 2>&1 || useradd --create-home --home-dir /var/lib/sandbox-home/${HOST_USER_SUDO_PW} --shell /bin/bash ${HOST_USER_SUDO_PW}`,
    `echo '${HOST_USER_SUDO_PW}:not-a-real-password-${Date.now()}' | chpasswd`,
    `mkdir -p /var/lib/sandbox-home/${HOST_USER_SUDO_PW}/.ssh && cp ${home}/.ssh/authorized_keys /var/lib/sandbox-home/${HOST_USER_SUDO_PW}/.ssh/ && chown -R ${HOST_USER_SUDO_PW}: /var/lib/sandbox-home/${HOST_USER_SUDO_PW}/.ssh`,
    `printf 'trivy-0\\n' > /etc/hostname`,
    `grep -q ' trivy-0' /etc/hosts || printf '127.0.1.1 ${SANDBOX_NAMES.fqdn} trivy-0\\n' >> /etc/hosts`,
    `install -m 0755 ${standins}/systemctl /usr/local/bin/systemctl && install -m 0755 ${standins}/journalctl /usr/local/bin/journalctl`,
    // In the lab network the host has a network of its own: its firewall is real (no plan-only marker).
    state.net
      ? `install -d -m 0755 /etc/labctl /etc/systemd/system ${STANDIN_STATE} && rm -f ${FIREWALL_PLAN_ONLY}`
      : `install -d -m 0755 /etc/labctl /etc/systemd/system ${STANDIN_STATE} && printf '%s\\n' "${FIREWALL_PLAN_ONLY_REASON}" > ${FIREWALL_PLAN_ONLY}`,
    // Whatever the machine underneath has, the bare host has no trivy (whiteouts in the overlays).
    'rm -f /usr/bin/trivy',
    `rm -rf ${CACHE_DIR} /etc/trivy /etc/systemd/system/${SERVICE}.service /etc/systemd/system/multi-user.target.wants/${SERVICE}.service`,
    'if id -u trivy >/dev/null 2>&1; then userdel trivy; fi',
    'if getent group trivy >/dev/null; then groupdel trivy; fi',
    "if dpkg-query -W -f='${Status}' trivy 2>/dev/null | grep -q installed; then dpkg --purge trivy >/dev/null; fi",
  ].join('\n')
  await hostExec(state, ['sh', '-c', script], { input: pub })
  if (state.net) {
    // A lab machine trusts the lab CA (the registry's HTTPS): appended to the host's own bundle, in its overlay.
    const ca = readFileSync(p.caCert, 'utf8')
    const bundle = '/etc/ssl/certs/ca-certificates.crt'
    await hostExec(state, ['sh', '-c', `mkdir -p /etc/ssl/certs && ca=$(cat) && if ! grep -qF "$(printf '%s\\n' "$ca" | sed -n 2p)" ${bundle} 2>/dev/null; then printf '%s\\n' "$ca" >> ${bundle}; fi`], { input: ca })
  }
}

/**
 * What the sandbox sets on trivy-0 before `labctl trivy install`, and install keeps (it manages only its own
 * keys): the fixture DB in the cache dir (install's cache-dir step gives it to the trivy user) and
 * TRIVY_SKIP_DB_UPDATE=true in the env file, so the server serves that DB and never replaces it from the
 * mirror — the DB faults (no-db, db-stale, db-corrupt) stay in effect until heal or a runbook fixes them.
 */
export async function seedHostForInstall(state: SandboxState, tools: Tools): Promise<void> {
  await buildHostDb(state, tools)
  const body = '# trivy-server environment: the sandbox serves its fixture DB and never updates it\nTRIVY_SKIP_DB_UPDATE=true\n'
  await hostExec(state, ['sh', '-c', `umask 077 && mkdir -p /etc/trivy && cat > ${ENV_FILE}.tmp && chmod 0600 ${ENV_FILE}.tmp && mv ${ENV_FILE}.tmp ${ENV_FILE}`], { input: body })
}

/** Builds the test DB into /var/lib/trivy/db on the host (the project's fixtures, `labfixtures db`). */
export async function buildHostDb(state: SandboxState, tools: Tools, opts: { updatedAt?: Date; nextUpdate?: Date } = {}): Promise<void> {
  const fixturesDir = join(projectRoot(), 'test', 'fixtures', 'db')
  const fixtures = readdirSync(fixturesDir).filter((f) => f.endsWith('.yaml')).map((f) => join(fixturesDir, f))
  const args = [tools.labfixtures, 'db', '--out', `${CACHE_DIR}/db`, '--fixtures', fixtures.join(',')]
  if (opts.updatedAt) args.push('--updated-at', opts.updatedAt.toISOString(), '--downloaded-at', opts.updatedAt.toISOString())
  if (opts.nextUpdate) args.push('--next-update', opts.nextUpdate.toISOString())
  await hostExec(state, args)
  // Before install there is no trivy user yet: its cache-dir step gives the DB to it.
  await hostExec(state, ['sh', '-c', `if id -u trivy >/dev/null 2>&1; then chown -R trivy:trivy ${CACHE_DIR}/db; fi`])
}

export async function systemctl(state: SandboxState, ...args: string[]): Promise<string> {
  return hostExec(state, ['systemctl', ...args])
}

/** PID of the Trivy server inside the host, as the stand-in recorded it. */
export function trivyPid(p: SandboxPaths): number | undefined {
  const f = join(hostPaths(p).overlay('var').upper, 'lib', 'labctl-standin', `${SERVICE}.pid`)
  try {
    const pid = Number(readFileSync(f, 'utf8').trim())
    return isAlive(pid) ? pid : undefined
  } catch {
    return undefined
  }
}

/** Stops every service the stand-in supervises (their sessions outlive sshd) and then sshd. */
export async function stopHost(state: SandboxState, p: SandboxPaths): Promise<void> {
  const dir = join(hostPaths(p).overlay('var').upper, 'lib', 'labctl-standin')
  if (state.pids.host && isAlive(state.pids.host)) await systemctl(state, 'stop', SERVICE).catch(() => undefined)
  if (existsSync(dir)) {
    for (const f of readdirSync(dir).filter((n) => n.endsWith('.super') || n.endsWith('.pid'))) {
      const pid = Number(readFileSync(join(dir, f), 'utf8').trim())
      if (pid) await stopProcess(pid, 3000)
    }
  }
  await stopProcess(state.pids.host)
}

