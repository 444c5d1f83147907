// The SSH layer every remote step of labctl goes through: one connection per host per run (pooled),
// host keys always verified against known_hosts, commands built from argument arrays, secrets only on
// stdin or over SFTP, atomic file writes.
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { homedir } from 'node:os'
import { join, posix } from 'node:path'
import ssh2, { type ClientChannel, type SFTPWrapper } from 'ssh2'

// ssh2 is CommonJS: Node's ESM loader does not see every named export, so take them off the default.
const { Client, utils: sshUtils } = ssh2
type Client = InstanceType<typeof ssh2.Client>
import { InterruptedError, LabctlError, oneLine } from '../errors.js'
import type { ScannerHost } from '../inventory/schema.js'
import { SshConfig, expandTokens } from './config.js'
import { connectError, hostKeyChangedError, hostKeyRevokedError, hostKeyUnknownError, sudoFailure, type SshErrorContext } from './failures.js'
import { appendKnownHost, hostKeyInfo, knownHostName, lookupKnownHosts, preferredHostKeyAlgorithms, verifyHostKey } from './known-hosts.js'
import { shellQuote } from './quote.js'
import { describeReadError, readBounded } from '../fs/read-bounded.js'

/** Where and how to connect. Every field but `host` is optional; ~/.ssh/config fills the gaps. */
export type SshTarget = {
  /** Name used in messages (the inventory host name); defaults to `host`. */
  name?: string
  /** Host name: matched against ~/.ssh/config Host patterns, recorded in known_hosts, and connected to unless `address` or HostName say otherwise. */
  host: string
  /** Address to connect to instead of resolving `host` (a HostName in ~/.ssh/config wins); also looked up in known_hosts. */
  address?: string
  /** Further names matched against ~/.ssh/config Host patterns (e.g. the short host name). */
  configNames?: string[]
  /** Remote user; else User in ~/.ssh/config; else root. */
  user?: string
  /** Else Port in ~/.ssh/config; else 22. */
  port?: number
  /** Private key file, tried first; then ssh-agent, then IdentityFile entries of ~/.ssh/config (else ~/.ssh/id_*). */
  identityFile?: string
  /** The only known_hosts file used (read and appended to); else UserKnownHostsFile or ~/.ssh/known_hosts (+ /etc/ssh/ssh_known_hosts, read only). */
  knownHostsFile?: string
  /** `[user@]host[:port]`, comma-separated for a chain; else ProxyJump in ~/.ssh/config. */
  jumpHost?: string
  connectTimeoutMs?: number
}

/** An inventory host or a bare target. */
export type SshHost = ScannerHost | SshTarget

export type SshPoolOptions = {
  /** Record the host key of a host that has none in known_hosts yet (never replaces a known key). */
  acceptNewHostKey?: boolean
  /** Hash the names of entries written to known_hosts (`|1|…`), like HashKnownHosts yes. */
  hashKnownHosts?: boolean
  /** ssh client config; default ~/.ssh/config; null ignores it. */
  sshConfigFile?: string | null
  /** Environment to read HOME and SSH_AUTH_SOCK from (default process.env). */
  env?: NodeJS.ProcessEnv
  /** Default connect timeout when the target gives none (ms). */
  connectTimeoutMs?: number
  /** Default command timeout (ms). */
  commandTimeoutMs?: number
  keepaliveIntervalMs?: number
  keepaliveCountMax?: number
  /** Commands run at once on one connection (sshd's MaxSessions defaults to 10). */
  maxChannelsPerConnection?: number
  /** Debug lines (connects, host keys accepted, commands). */
  log?: (line: string) => void
}

export type RunOptions = {
  /**
   * The step needs privileges: run through `sudo -n`, unless logged in as root or the inventory host says
   * `sudo: false` (then the command runs as the login user).
   */
  sudo?: boolean
  /** Run as this user through `sudo -n -u USER`. */
  user?: string
  /** Sent on the command's stdin, then EOF: the only way a secret reaches a remote command. */
  stdin?: string | Buffer
  /** Command timeout (default: the pool's commandTimeoutMs, 5 min); enforced on the host with timeout(1). */
  timeoutMs?: number
  /** Throw a LabctlError when the command exits non-zero. */
  check?: boolean
  signal?: AbortSignal
  /** Values that must never appear in the argv (refused as a labctl bug when they do). */
  secrets?: readonly string[]
  /** Stop and fail when stdout + stderr exceed this (default 64 MiB). */
  maxOutputBytes?: number
  /** Stream stdout here as it arrives instead of collecting it (e.g. `journalctl -f`); RunResult.stdout is then empty. */
  onStdout?: (chunk: Buffer) => void
}

export type RunResult = {
  /** Exit status; 128+N when killed by signal N (the signal name is in `signal`). */
  code: number
  signal?: string
  stdout: string
  stderr: string
  /** The command line (quoted argv, with its sudo prefix; the timeout(1) wrapper labctl adds is not shown). */
  command: string
}

export type WriteFileOptions = {
  /** File mode, e.g. 0o600. */
  mode: number
  /** Owner and group (names or numbers): the file is installed with `install -o -g` (through sudo -n unless root). */
  owner?: string
  group?: string
  /** Write through sudo -n even without owner/group (a directory the login user cannot write); same rules as RunOptions.sudo. */
  sudo?: boolean
  /** Keep the replaced file as TARGET.prev (default true). */
  keepPrevious?: boolean
  timeoutMs?: number
}

type IdentityFile = { path: string; explicit: boolean }

/** A target with ~/.ssh/config applied: what is actually connected to. */
export type ResolvedTarget = {
  label: string
  host: string
  port: number
  user: string
  connectTimeoutMs: number
  identityFiles: IdentityFile[]
  agentSocket?: string
  /** known_hosts names ("host" / "[host]:port") the key may be recorded under; all are written on acceptance. */
  hostKeyNames: string[]
  knownHostsFiles: string[]
  knownHostsWriteFile: string
  jump?: ResolvedTarget
  key: string
}

type Conn = {
  client: Client
  target: ResolvedTarget
  closed: boolean
  sftp?: Promise<SFTPWrapper>
  active: number
  waiting: Array<() => void>
}

type ExecOutcome = { code: number; signal?: string; stdout: Buffer; stderr: Buffer }

const DEFAULT_IDENTITIES = ['id_ed25519', 'id_ecdsa', 'id_rsa']
/** Seconds between timeout(1)'s SIGTERM and its SIGKILL. */
const KILL_AFTER_S = 5
/** The shell saying it has no `timeout` (not GNU timeout saying the command is missing). */
const TIMEOUT_MISSING = /(^|[\s:])timeout: (command )?not found/m
const INSTALL_SCRIPT = [
  'set -eu',
  'src=$1 target=$2 mode=$3 owner=$4 group=$5 keep=$6',
  'if [ -d "$target" ]; then echo "labctl: $target is a directory" >&2; exit 3; fi',
  'dir=$(dirname "$target")',
  'base=$(basename "$target")',
  'stage=$(mktemp "$dir/.$base.labctl.XXXXXXXX")',
  'trap \'rm -f "$stage"\' EXIT',
  'set -- -m "$mode"',
  'if [ -n "$owner" ]; then set -- "$@" -o "$owner"; fi',
  'if [ -n "$group" ]; then set -- "$@" -g "$group"; fi',
  'install "$@" "$src" "$stage"',
  'sync "$stage" 2>/dev/null || true',
  'if [ "$keep" = 1 ] && [ -e "$target" ]; then ln -f "$target" "$target.prev" 2>/dev/null || cp -p "$target" "$target.prev"; fi',
  'mv -f "$stage" "$target"',
  'trap - EXIT',
  'sync "$dir" 2>/dev/null || true',
].join('\n')

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGILL: 4, SIGABRT: 6, SIGFPE: 8, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15 }

/**
 * Sends SIGKILL to a remote command (an SSH "signal" channel request; OpenSSH's sshd kills the process group).
 * ssh2's ClientChannel.signal() silently does nothing once stdin is closed, which it always is here, so the
 * request goes through the channel's protocol object directly.
 */
function killRemote(stream: ClientChannel): void {
  const ch = stream as unknown as { outgoing?: { id?: number; state?: string }; _client?: { _protocol?: { signal(id: number, sig: string): void } } }
  try {
    if (ch.outgoing?.id !== undefined && ch.outgoing.state !== 'closed') ch._client?._protocol?.signal(ch.outgoing.id, 'KILL')
    else stream.signal('KILL')
  } catch {
    /* channel already gone */
  }
}

function isScannerHost(h: SshHost): h is ScannerHost {
  return 'fqdn' in h && 'ssh' in h
}

/** `sudo: true` asks for privileges; an inventory host with `sudo: false` gets the step without sudo. */
function useSudo(h: SshHost, wanted: boolean | undefined): boolean {
  return wanted === true && (!isScannerHost(h) || h.sudo)
}

/** An inventory host as an SshTarget: connect to its address when known (no DNS needed), else its FQDN. */
export function targetFromHost(h: ScannerHost): SshTarget {
  const s = h.ssh
  return {
    name: h.name,
    host: h.fqdn,
    ...(h.address ? { address: h.address } : {}),
    configNames: [h.name],
    // The schema's defaults (root, 22) yield to ~/.ssh/config, as ssh's own defaults do.
    ...(s.user !== 'root' ? { user: s.user } : {}),
    ...(s.port !== 22 ? { port: s.port } : {}),
    ...(s.identityFile ? { identityFile: s.identityFile } : {}),
    ...(s.knownHostsFile ? { knownHostsFile: s.knownHostsFile } : {}),
    ...(s.jumpHost ? { jumpHost: s.jumpHost } : {}),
    connectTimeoutMs: s.connectTimeoutMs,
  }
}

/** "[user@]host[:port]", "ssh://user@host:port" or "user@[::1]:port" → parts. */
export function parseJumpSpec(spec: string): { user?: string; host: string; port?: number } {
  const s = spec.trim().replace(/^ssh:\/\//, '')
  const m = /^(?:([^@\s]+)@)?(\[[^\]]+\]|[^:@\s]+)(?::(\d{1,5}))?$/.exec(s)
  if (!m) {
    throw new LabctlError(`jump host "${oneLine(spec, 80)}" is not [user@]host[:port]`, {
      code: 'SSH_BAD_JUMP',
      suggestion: 'fix ssh.jumpHost in the inventory or ProxyJump in ~/.ssh/config',
    })
  }
  return { ...(m[1] ? { user: m[1] } : {}), host: m[2]!.replace(/^\[|\]$/g, ''), ...(m[3] ? { port: Number(m[3]) } : {}) }
}

function sftpCode(err: unknown): number | undefined {
  const c = (err as { code?: unknown })?.code
  return typeof c === 'number' ? c : undefined
}

function promisify<T>(fn: (cb: (err: Error | undefined | null, v: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v))))
}

export class SshPool {
  private readonly conns = new Map<string, Promise<Conn>>()
  private readonly live = new Set<Conn>()
  private readonly opts: SshPoolOptions
  private readonly env: NodeJS.ProcessEnv
  private readonly home: string
  private sshConfig?: SshConfig
  private closing = false
  /** Completed SSH handshakes (including jump hosts), for diagnostics and tests. */
  handshakes = 0

  constructor(opts: SshPoolOptions = {}) {
    this.opts = opts
    this.env = opts.env ?? process.env
    this.home = this.env.HOME || homedir()
  }

  private log(line: string): void {
    this.opts.log?.(line)
  }

  private config(): SshConfig {
    if (!this.sshConfig) {
      const file = this.opts.sshConfigFile === undefined ? join(this.home, '.ssh', 'config') : this.opts.sshConfigFile
      this.sshConfig = file === null ? SshConfig.empty(this.home) : SshConfig.load(file, this.home)
    }
    return this.sshConfig
  }

  private expandPath(p: string, tokens: { h?: string; r?: string; p?: number } = {}): string {
    return expandTokens(p, { ...tokens, d: this.home })
  }

  /** Applies ~/.ssh/config and defaults to a host. */
  resolve(h: SshHost, depth = 0): ResolvedTarget {
    const t = isScannerHost(h) ? targetFromHost(h) : h
    if (depth > 5) {
      throw new LabctlError(`jump host chain to ${t.host} is longer than 5 hops (a ProxyJump loop?)`, {
        code: 'SSH_BAD_JUMP',
        suggestion: 'check ProxyJump in ~/.ssh/config and ssh.jumpHost in the inventory',
      })
    }
    const cfg = this.config().lookup([t.host, ...(t.configNames ?? [])])
    const host = cfg.hostName ?? t.address ?? t.host
    const user = t.user ?? cfg.user ?? 'root'
    const port = t.port ?? cfg.port ?? 22
    const tokens = { h: host, r: user, p: port }
    const identityFiles: IdentityFile[] = []
    if (t.identityFile) identityFiles.push({ path: this.expandPath(t.identityFile, tokens), explicit: true })
    for (const f of cfg.identityFiles) identityFiles.push({ path: this.expandPath(f, tokens), explicit: false })
    if (identityFiles.length === 0) for (const f of DEFAULT_IDENTITIES) identityFiles.push({ path: join(this.home, '.ssh', f), explicit: false })
    const sock = this.env.SSH_AUTH_SOCK
    let knownHostsFiles: string[]
    if (t.knownHostsFile) knownHostsFiles = [this.expandPath(t.knownHostsFile, tokens)]
    else {
      const user = cfg.userKnownHostsFiles?.map((f) => this.expandPath(f, tokens)) ?? [join(this.home, '.ssh', 'known_hosts'), join(this.home, '.ssh', 'known_hosts2')]
      knownHostsFiles = [...user, '/etc/ssh/ssh_known_hosts', '/etc/ssh/ssh_known_hosts2']
    }
    const hostKeyNames = [...new Set([t.host, host, ...(t.address ? [t.address] : [])].map((n) => knownHostName(n, port)))]
    const jumpSpec = t.jumpHost ?? cfg.proxyJump
    let jump: ResolvedTarget | undefined
    if (jumpSpec) {
      const hops = jumpSpec.split(',').map((s) => s.trim()).filter(Boolean)
      const last = parseJumpSpec(hops.at(-1)!)
      const rest = hops.slice(0, -1).join(',')
      jump = this.resolve(
        {
          host: last.host,
          ...(last.user ? { user: last.user } : {}),
          ...(last.port ? { port: last.port } : {}),
          ...(t.knownHostsFile ? { knownHostsFile: t.knownHostsFile } : {}),
          ...(rest ? { jumpHost: rest } : {}),
          connectTimeoutMs: t.connectTimeoutMs ?? this.opts.connectTimeoutMs ?? 10_000,
        },
        depth + 1,
      )
      // The inventory's key usually opens the jump host too: offer it after the jump host's own.
      if (t.identityFile) jump.identityFiles.push({ path: this.expandPath(t.identityFile, tokens), explicit: false })
    }
    const name = t.name ?? t.host
    const endpoint = `${user}@${host}:${port}`
    return {
      label: name === host ? endpoint : `${name} (${endpoint})`,
      host,
      port,
      user,
      connectTimeoutMs: t.connectTimeoutMs ?? this.opts.connectTimeoutMs ?? 10_000,
      identityFiles,
      ...(sock ? { agentSocket: sock } : {}),
      hostKeyNames,
      knownHostsFiles,
      knownHostsWriteFile: knownHostsFiles[0]!,
      ...(jump ? { jump } : {}),
      key: `${endpoint}${jump ? ` via ${jump.key}` : ''}`,
    }
  }

  /** The pooled connection to a host, opened on first use. */
  async connect(h: SshHost): Promise<{ target: ResolvedTarget; client: Client }> {
    const c = await this.conn(this.resolve(h))
    return { target: c.target, client: c.client }
  }

  private conn(r: ResolvedTarget): Promise<Conn> {
    if (this.closing) return Promise.reject(new LabctlError('SSH connections are being closed', { code: 'SSH_CLOSING' }))
    const existing = this.conns.get(r.key)
    if (existing) return existing
    const p = this.open(r)
    this.conns.set(r.key, p)
    p.catch(() => {
      if (this.conns.get(r.key) === p) this.conns.delete(r.key)
    })
    return p
  }

  private async open(r: ResolvedTarget): Promise<Conn> {
    const auth = this.authMethods(r)
    let sock: ClientChannel | undefined
    let via: string | undefined
    if (r.jump) {
      const jump = await this.conn(r.jump)
      via = `via jump host ${jump.target.label}`
      sock = await this.forward(jump, r)
    }
    const ctx: SshErrorContext = { label: r.label, host: r.host, port: r.port, user: r.user, timeoutMs: r.connectTimeoutMs, triedAuth: auth.skipped.map((s) => `skipped ${s}`), ...(via ? { via } : {}) }
    const known = lookupKnownHosts(r.knownHostsFiles, r.hostKeyNames).filter((e) => e.marker === undefined)
    const client = new Client()
    const conn: Conn = { client, target: r, closed: false, active: 0, waiting: [] }
    client.on('close', () => {
      conn.closed = true
      this.live.delete(conn)
      // Forget a dead connection so that the next step reconnects.
      const p = this.conns.get(r.key)
      if (p) void p.then((c) => c === conn && this.conns.get(r.key) === p && this.conns.delete(r.key)).catch(() => undefined)
      for (const w of conn.waiting.splice(0)) w()
    })
    let hostKeyError: LabctlError | undefined
    let acceptBlob: Buffer | undefined

    const hostVerifier = (key: Buffer, verify: (ok: boolean) => void): void => {
      const verdict = verifyHostKey(r.knownHostsFiles, r.hostKeyNames, key)
      switch (verdict.status) {
        case 'ok':
          return verify(true)
        case 'revoked':
          hostKeyError = hostKeyRevokedError(ctx, verdict.offered, verdict.entry)
          return verify(false)
        case 'changed':
          hostKeyError = hostKeyChangedError(ctx, verdict.offered, verdict.known)
          return verify(false)
        case 'unknown':
          if (this.opts.acceptNewHostKey) {
            acceptBlob = key
            return verify(true)
          }
          hostKeyError = hostKeyUnknownError(ctx, verdict.offered, r.knownHostsWriteFile)
          return verify(false)
      }
    }

    const queue = [...auth.methods]
    const authHandler = (methodsLeft: string[] | null, _partial: boolean | null, next: (m: unknown) => void): void => {
      if (methodsLeft) ctx.serverMethods = methodsLeft
      if (methodsLeft && !methodsLeft.includes('publickey')) return next(false)
      const m = queue.shift()
      if (!m) return next(false)
      ctx.triedAuth!.push(m.describe)
      return next(m.method)
    }

    await new Promise<void>((resolve, reject) => {
      let settled = false
      const fail = (err: unknown): void => {
        if (settled) return
        settled = true
        client.destroy()
        reject(hostKeyError ?? connectError(err, ctx))
      }
      client.on('error', (err: Error & { level?: string }) => {
        if (err.level === 'agent') {
          ctx.triedAuth!.push(`ssh-agent failed (${oneLine(err.message, 80)})`)
          return
        }
        if (!settled) return fail(err)
        this.log(`ssh: ${r.label}: ${oneLine(err.message)}`)
      })
      client.on('close', () => {
        if (!settled) fail(new Error('connection closed before the SSH handshake completed'))
      })
      client.on('ready', () => {
        if (settled) return
        settled = true
        resolve()
      })
      try {
        client.connect({
          ...(sock ? { sock } : { host: r.host, port: r.port }),
          username: r.user,
          readyTimeout: r.connectTimeoutMs,
          keepaliveInterval: this.opts.keepaliveIntervalMs ?? 15_000,
          keepaliveCountMax: this.opts.keepaliveCountMax ?? 4,
          hostVerifier,
          authHandler: authHandler as never,
          algorithms: { serverHostKey: preferredHostKeyAlgorithms(known.map((e) => e.key.type)) as never },
        })
      } catch (err) {
        fail(err)
      }
    })

    this.handshakes++
    if (acceptBlob) {
      const lines = appendKnownHost(r.knownHostsWriteFile, r.hostKeyNames, acceptBlob, { hash: this.opts.hashKnownHosts ?? false })
      const info = hostKeyInfo(acceptBlob)
      this.log(`ssh: recorded host key of ${r.label} (${info.label} ${info.fingerprint}) in ${r.knownHostsWriteFile}: ${lines.length} line(s)`)
    }
    if (conn.closed) throw this.lostError(conn, 'right after connecting')
    this.live.add(conn)
    this.log(`ssh: connected to ${r.label}${via ? ` ${via}` : ''}`)
    return conn
  }

  private forward(jump: Conn, r: ResolvedTarget): Promise<ClientChannel> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          new LabctlError(`jump host ${jump.target.label} did not connect to ${r.host}:${r.port} within ${r.connectTimeoutMs} ms`, {
            code: 'SSH_TIMEOUT',
            suggestion: `check that ${r.host}:${r.port} is reachable from the jump host`,
          }),
        )
      }, r.connectTimeoutMs)
      jump.client.forwardOut('127.0.0.1', 0, r.host, r.port, (err, stream) => {
        clearTimeout(timer)
        if (err) {
          const reason = err.message.replace(/^\(SSH\) Channel open failure: /, '')
          return reject(
            new LabctlError(`jump host ${jump.target.label} could not connect to ${r.host}:${r.port}: ${oneLine(reason, 120)}`, {
              code: /refused/i.test(reason) ? 'SSH_CONN_REFUSED' : /prohibited/i.test(reason) ? 'SSH_JUMP_PROHIBITED' : 'SSH_JUMP_FAILED',
              suggestion: /prohibited/i.test(reason)
                ? `allow TCP forwarding for ${jump.target.user} on the jump host (AllowTcpForwarding in its sshd_config)`
                : `check that sshd runs on ${r.host}:${r.port} and that the jump host can reach it`,
              cause: err,
            }),
          )
        }
        resolve(stream)
      })
    })
  }

  private authMethods(r: ResolvedTarget): { methods: Array<{ describe: string; method: unknown }>; skipped: string[] } {
    const methods: Array<{ describe: string; method: unknown }> = []
    const skipped: string[] = []
    const keyMethod = (f: IdentityFile): void => {
      let buf: Buffer
      try {
        buf = readBounded(f.path, 'ssh-key')
      } catch (err) {
        if (f.explicit) {
          throw new LabctlError(`identity file ${f.path} for ${r.label} cannot be read (${describeReadError(err)})`, {
            code: 'SSH_IDENTITY',
            suggestion: 'fix ssh.identityFile in the inventory (a private key file readable by you)',
            cause: err,
          })
        }
        return
      }
      const parsed = sshUtils.parseKey(buf)
      const key = Array.isArray(parsed) ? parsed[0] : parsed
      if (!key || key instanceof Error) {
        const why = key instanceof Error && /encrypt|passphrase/i.test(key.message) ? 'encrypted: load it with ssh-add instead' : 'not a usable private key'
        skipped.push(`${f.path} (${why})`)
        if (f.explicit && !r.agentSocket) {
          throw new LabctlError(`identity file ${f.path} for ${r.label}: ${why}`, {
            code: 'SSH_IDENTITY',
            suggestion: 'use an unencrypted key readable only by you, or load the key into ssh-agent (ssh-add) and set SSH_AUTH_SOCK',
          })
        }
        return
      }
      methods.push({ describe: `key ${f.path}`, method: { type: 'publickey', username: r.user, key } })
    }
    const explicit = r.identityFiles.filter((f) => f.explicit)
    explicit.forEach(keyMethod)
    if (r.agentSocket) {
      if (existsSync(r.agentSocket)) methods.push({ describe: `ssh-agent (${r.agentSocket})`, method: { type: 'agent', username: r.user, agent: r.agentSocket } })
      else skipped.push(`ssh-agent (SSH_AUTH_SOCK ${r.agentSocket} does not exist)`)
    }
    r.identityFiles.filter((f) => !f.explicit).forEach(keyMethod)
    if (methods.length === 0) {
      throw new LabctlError(
        `no SSH credentials for ${r.label}: no identity file${r.agentSocket ? '' : ' and no ssh-agent (SSH_AUTH_SOCK unset)'}${skipped.length ? `; skipped ${skipped.join(', ')}` : ''}`,
        {
          code: 'SSH_NO_CREDENTIALS',
          suggestion: 'set ssh.identityFile in the inventory, an IdentityFile in ~/.ssh/config, or start ssh-agent and ssh-add your key',
        },
      )
    }
    return { methods, skipped }
  }

  private async acquire(c: Conn): Promise<() => void> {
    const max = this.opts.maxChannelsPerConnection ?? 6
    while (c.active >= max && !c.closed) await new Promise<void>((r) => c.waiting.push(r))
    c.active++
    let released = false
    return () => {
      if (released) return
      released = true
      c.active--
      c.waiting.shift()?.()
    }
  }

  private lostError(c: Conn, what: string): LabctlError {
    return new LabctlError(`connection to ${c.target.label} was lost ${what}`, {
      code: 'SSH_CONNECTION_LOST',
      suggestion: `check the host and the network; rerun the step`,
    })
  }

  /** Runs COMMAND on one channel; LOCALDEADLINEMS is the backstop after which the channel is abandoned. */
  private async exec(c: Conn, command: string, shown: string, o: RunOptions, localDeadlineMs: number): Promise<ExecOutcome> {
    if (o.signal?.aborted) throw new InterruptedError()
    const release = await this.acquire(c)
    if (c.closed) {
      release()
      throw this.lostError(c, 'before the command could start')
    }
    const maxBytes = o.maxOutputBytes ?? 64 * 1024 * 1024
    this.log(`ssh: ${c.target.label}: ${shown}`)
    try {
      const stream = await new Promise<ClientChannel>((resolve, reject) => {
        c.client.exec(command, (err, s) => {
          if (err) {
            reject(
              new LabctlError(`cannot start a command on ${c.target.label}: ${oneLine(err.message, 160)}`, {
                code: 'SSH_EXEC_FAILED',
                suggestion: "check sshd's MaxSessions and log on the host",
                cause: err,
              }),
            )
          } else resolve(s)
        })
      })
      return await new Promise<ExecOutcome>((resolve, reject) => {
        const out: Buffer[] = []
        const err: Buffer[] = []
        let bytes = 0
        let code: number | null | undefined
        let signal: string | undefined
        let done = false
        const finish = (e?: LabctlError): void => {
          if (done) return
          done = true
          clearTimeout(timer)
          o.signal?.removeEventListener('abort', onAbort)
          c.client.removeListener('close', onLost)
          if (e) {
            killRemote(stream)
            stream.close()
            return reject(e)
          }
          const exit = code ?? (signal ? 128 + (SIGNALS[signal] ?? 0) : 255)
          resolve({ code: exit, ...(signal ? { signal } : {}), stdout: Buffer.concat(out), stderr: Buffer.concat(err) })
        }
        const timer = setTimeout(() => {
          finish(
            new LabctlError(`command did not finish within ${localDeadlineMs} ms on ${c.target.label} and could not be stopped there: ${shown}`, {
              code: 'SSH_COMMAND_TIMEOUT',
              suggestion: `it may still be running: check on ${c.target.host} (ps) before rerunning`,
            }),
          )
        }, localDeadlineMs)
        const onAbort = (): void => finish(new InterruptedError())
        o.signal?.addEventListener('abort', onAbort, { once: true })
        const onLost = (): void => finish(this.lostError(c, `while running: ${shown}`))
        c.client.once('close', onLost)
        const collect =
          (into: Buffer[]) =>
          (chunk: Buffer): void => {
            bytes += chunk.length
            if (bytes > maxBytes) {
              finish(
                new LabctlError(`command printed more than ${maxBytes} bytes on ${c.target.label}: ${shown}`, {
                  code: 'SSH_OUTPUT_TOO_LARGE',
                  suggestion: 'this is a labctl bug or a runaway command: report it',
                }),
              )
              return
            }
            into.push(chunk)
          }
        stream.on('data', o.onStdout ?? collect(out))
        stream.stderr.on('data', collect(err))
        stream.on('exit', (exitCode: number | null, sig?: string) => {
          code = exitCode
          if (sig) signal = sig
        })
        stream.on('close', () => finish())
        stream.on('error', () => undefined)
        if (o.stdin !== undefined) stream.end(o.stdin)
        else stream.end()
      })
    } finally {
      release()
    }
  }

  private sudoArgv(c: Conn, argv: readonly string[], o: RunOptions): string[] {
    if (o.user !== undefined && o.user !== c.target.user) return ['sudo', '-n', '-u', o.user, '--', ...argv]
    if (o.sudo && c.target.user !== 'root') return ['sudo', '-n', '--', ...argv]
    return [...argv]
  }

  /**
   * sudo wrapping, the remote `timeout` wrapper, and the mapping of sudo's and timeout's own failures.
   * The command timeout is enforced on the host by coreutils `timeout` (TERM, then KILL 5 s later): an SSH
   * "signal" request cannot do it, OpenSSH ignores those on root logins (no privilege separation child).
   */
  private async runRaw(c: Conn, argv: readonly string[], o: RunOptions): Promise<ExecOutcome & { command: string }> {
    for (const s of o.secrets ?? []) {
      if (s !== '' && argv.some((a) => a.includes(s))) {
        throw new LabctlError('refusing to put a secret in a remote command line (it would show in ps and logs)', {
          code: 'SSH_SECRET_IN_ARGV',
          suggestion: 'this is a labctl bug: pass the secret on stdin or write it with SFTP',
        })
      }
    }
    const timeoutMs = o.timeoutMs ?? this.opts.commandTimeoutMs ?? 300_000
    const inner = this.sudoArgv(c, argv, o)
    const command = shellQuote(inner)
    const seconds = String(Number(Math.max(timeoutMs / 1000, 0.001).toFixed(3)))
    const sent = shellQuote(['timeout', '-k', String(KILL_AFTER_S), seconds, ...inner])
    const shown = oneLine(command, 160)
    const started = Date.now()
    const res = await this.exec(c, sent, shown, o, timeoutMs + KILL_AFTER_S * 1000 + 3000)
    const elapsed = Date.now() - started
    if ((res.code === 124 || res.code === 137) && elapsed >= timeoutMs - 50) {
      throw new LabctlError(`command timed out after ${timeoutMs} ms on ${c.target.label}: ${shown}`, {
        code: 'SSH_COMMAND_TIMEOUT',
        suggestion: `it was stopped on the host (SIGTERM${res.code === 137 ? ', then SIGKILL' : ''}); check ${c.target.host} (load, a hung mount, a lock) and rerun`,
      })
    }
    const stderr = res.code === 0 ? '' : res.stderr.toString('utf8')
    if (res.code === 127 && TIMEOUT_MISSING.test(stderr)) {
      throw new LabctlError(`coreutils "timeout" is missing on ${c.target.label}`, {
        code: 'SSH_NO_TIMEOUT',
        suggestion: `install coreutils on ${c.target.host}; labctl uses timeout(1) to stop remote commands that hang`,
      })
    }
    if (inner[0] === 'sudo' && res.code !== 0) {
      const e = sudoFailure(stderr, { host: c.target.label, user: c.target.user, exitCode: res.code })
      if (e) throw e
    }
    return { ...res, command }
  }

  /** Runs ARGV on the host (each element one literal word), on the pooled connection. */
  async run(h: SshHost, argv: readonly string[], o: RunOptions = {}): Promise<RunResult> {
    const c = await this.conn(this.resolve(h))
    const res = await this.runRaw(c, argv, { ...o, sudo: useSudo(h, o.sudo) })
    const result: RunResult = {
      code: res.code,
      ...(res.signal ? { signal: res.signal } : {}),
      stdout: res.stdout.toString('utf8'),
      stderr: res.stderr.toString('utf8'),
      command: res.command,
    }
    if (o.check && result.code !== 0) {
      throw new LabctlError(
        `\`${oneLine(argv.join(' '), 120)}\` failed on ${c.target.label} (exit ${result.code}${result.signal ? `, ${result.signal}` : ''}): ${oneLine(result.stderr || result.stdout, 200) || 'no output'}`,
        { code: 'SSH_COMMAND_FAILED', suggestion: `run it by hand on ${c.target.host} to see the full output` },
      )
    }
    return result
  }

  private sftp(c: Conn): Promise<SFTPWrapper> {
    if (!c.sftp) {
      c.sftp = new Promise<SFTPWrapper>((resolve, reject) => {
        c.client.sftp((err, s) => {
          if (err) {
            reject(
              new LabctlError(`SFTP is not available on ${c.target.label}: ${oneLine(err.message, 120)}`, {
                code: 'SSH_SFTP_UNAVAILABLE',
                suggestion: 'enable the sftp subsystem in the host\'s sshd_config ("Subsystem sftp internal-sftp")',
                cause: err,
              }),
            )
          } else {
            s.on('close', () => {
              if (c.sftp) delete c.sftp
            })
            resolve(s)
          }
        })
      })
      c.sftp.catch(() => {
        delete c.sftp
      })
    }
    return c.sftp
  }

  private sftpError(err: unknown, c: Conn, what: string, path: string): LabctlError {
    if (err instanceof LabctlError) return err
    const code = sftpCode(err)
    const reason = code === 2 ? 'no such file or directory' : code === 3 ? 'permission denied' : oneLine((err as Error)?.message ?? String(err), 120)
    return new LabctlError(`cannot ${what} ${path} on ${c.target.label}: ${reason}`, {
      code: 'SSH_SFTP_FAILED',
      suggestion:
        code === 3
          ? `that needs privileges: write it with owner/group or sudo (host.sudo), or check the permissions of ${posix.dirname(path)}`
          : `check that ${posix.dirname(path)} exists on ${c.target.host}`,
      cause: err,
    })
  }

  /** Writes CONTENT to a fresh file over SFTP (0600, fsynced), failing if PATH exists. */
  private async sftpPut(s: SFTPWrapper, path: string, content: Buffer, mode: number): Promise<void> {
    const handle = await promisify<Buffer>((cb) => s.open(path, 'wx', { mode: 0o600 }, cb))
    try {
      for (let off = 0; off < content.length; off += 32 * 1024) {
        const len = Math.min(32 * 1024, content.length - off)
        await promisify<void>((cb) => s.write(handle, content, off, len, off, (e) => cb(e, undefined)))
      }
      await promisify<void>((cb) => s.ext_openssh_fsync(handle, (e) => cb(e, undefined))).catch((e: unknown) => {
        // Older servers lack fsync@openssh.com: the rename still makes the write atomic.
        if (!/not supported|unsupported/i.test(String((e as Error)?.message))) throw e
      })
      await promisify<void>((cb) => s.fchmod(handle, mode, (e) => cb(e, undefined)))
    } finally {
      await promisify<void>((cb) => s.close(handle, (e) => cb(e, undefined))).catch(() => undefined)
    }
  }

  /**
   * Atomically replaces PATH on the host with CONTENT, mode MODE: a temp file in the same directory, fsync,
   * chmod, then rename over the target, the old version kept as PATH.prev. With owner/group (or sudo), the
   * content goes over SFTP into a private temp dir, then `install -m -o -g` + `mv` run through `sudo -n`.
   * The content never appears in a command line.
   */
  async writeFile(h: SshHost, path: string, content: string | Buffer, o: WriteFileOptions): Promise<void> {
    // eslint-disable-next-line no-control-regex
    if (!path.startsWith('/') || /[\u0000-\u001f]/.test(path) || path.endsWith('/')) {
      throw new LabctlError(`remote path "${oneLine(path, 120)}" must be an absolute file path`, { code: 'SSH_BAD_PATH', suggestion: 'this is a labctl bug: report it' })
    }
    for (const [what, v] of [['owner', o.owner], ['group', o.group]] as const) {
      if (v !== undefined && !/^([a-z_][a-z0-9_-]*\$?|\d+)$/.test(v)) {
        throw new LabctlError(`${what} "${oneLine(v, 40)}" is not a user/group name`, { code: 'SSH_BAD_OWNER', suggestion: 'fix the owner/group in the inventory' })
      }
    }
    if (!Number.isInteger(o.mode) || o.mode < 0 || o.mode > 0o7777) {
      throw new LabctlError(`file mode ${String(o.mode)} is not a permission mode`, { code: 'SSH_BAD_MODE', suggestion: 'this is a labctl bug: report it' })
    }
    const buf = typeof content === 'string' ? Buffer.from(content, 'utf8') : content
    const keep = o.keepPrevious ?? true
    const c = await this.conn(this.resolve(h))
    const s = await this.sftp(c)
    const privileged = o.owner !== undefined || o.group !== undefined || (useSudo(h, o.sudo) && c.target.user !== 'root')
    if (!privileged) {
      const dir = posix.dirname(path)
      const tmp = posix.join(dir, `.${posix.basename(path)}.labctl-${randomBytes(6).toString('hex')}.tmp`)
      try {
        await this.sftpPut(s, tmp, buf, o.mode)
        if (keep) {
          const exists = await promisify<unknown>((cb) => s.lstat(path, cb)).then(
            () => true,
            (e: unknown) => {
              if (sftpCode(e) === 2) return false
              throw e
            },
          )
          if (exists) {
            await promisify<void>((cb) => s.unlink(`${path}.prev`, (e) => cb(e, undefined))).catch((e: unknown) => {
              if (sftpCode(e) !== 2) throw e
            })
            await promisify<void>((cb) => s.ext_openssh_hardlink(path, `${path}.prev`, (e) => cb(e, undefined)))
          }
        }
        await promisify<void>((cb) => s.ext_openssh_rename(tmp, path, (e) => cb(e, undefined)))
      } catch (err) {
        await promisify<void>((cb) => s.unlink(tmp, (e) => cb(e, undefined))).catch(() => undefined)
        throw this.sftpError(err, c, 'write', path)
      }
      return
    }
    const sudo = c.target.user !== 'root'
    const timeoutMs = o.timeoutMs ?? 60_000
    const tmpDir = (await this.run(h, ['mktemp', '-d'], { check: true, timeoutMs })).stdout.trim()
    if (!tmpDir.startsWith('/')) throw new LabctlError(`mktemp -d on ${c.target.label} printed "${oneLine(tmpDir, 80)}"`, { code: 'SSH_SFTP_FAILED' })
    try {
      const staged = posix.join(tmpDir, 'content')
      await this.sftpPut(s, staged, buf, 0o600).catch((err: unknown) => {
        throw this.sftpError(err, c, 'write', staged)
      })
      const mode = o.mode.toString(8).padStart(4, '0')
      const res = await this.run(h, ['sh', '-c', INSTALL_SCRIPT, 'labctl-install', staged, path, mode, o.owner ?? '', o.group ?? '', keep ? '1' : '0'], {
        sudo,
        timeoutMs,
      })
      if (res.code !== 0) {
        throw new LabctlError(`installing ${path} (mode ${mode}${o.owner ? `, owner ${o.owner}` : ''}${o.group ? `, group ${o.group}` : ''}) on ${c.target.label} failed: ${oneLine(res.stderr || res.stdout, 200) || `exit ${res.code}`}`, {
          code: 'SSH_INSTALL_FAILED',
          suggestion: `check that ${posix.dirname(path)} exists and that the owner and group exist on ${c.target.host}`,
        })
      }
    } finally {
      await this.run(h, ['rm', '-rf', '--', tmpDir], { timeoutMs }).catch(() => undefined)
    }
  }

  /** Reads a remote file: over SFTP, or `sudo -n cat` when SUDO (and not root). */
  async readFile(h: SshHost, path: string, o: { sudo?: boolean; timeoutMs?: number } = {}): Promise<Buffer> {
    const c = await this.conn(this.resolve(h))
    if (useSudo(h, o.sudo) && c.target.user !== 'root') {
      const res = await this.runRaw(c, ['cat', '--', path], { sudo: true, ...(o.timeoutMs ? { timeoutMs: o.timeoutMs } : {}) })
      if (res.code !== 0) {
        throw new LabctlError(`cannot read ${path} on ${c.target.label}: ${oneLine(res.stderr.toString('utf8'), 160)}`, {
          code: 'SSH_READ_FAILED',
          suggestion: `check that ${path} exists`,
        })
      }
      return res.stdout
    }
    const s = await this.sftp(c)
    return promisify<Buffer>((cb) => s.readFile(path, cb)).catch((err: unknown) => {
      throw this.sftpError(err, c, 'read', path)
    })
  }

  /** Closes every connection (targets before the jump hosts they go through). Idempotent. */
  async closeAll(graceMs = 2000): Promise<void> {
    this.closing = true
    const settled = await Promise.allSettled([...this.conns.values()])
    const conns = [...new Set([...settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : [])), ...this.live])]
    const depth = (r: ResolvedTarget): number => (r.jump ? 1 + depth(r.jump) : 0)
    conns.sort((a, b) => depth(b.target) - depth(a.target))
    for (const c of conns) {
      if (c.closed) continue
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          c.client.destroy()
          resolve()
        }, graceMs)
        c.client.once('close', () => {
          clearTimeout(timer)
          resolve()
        })
        c.client.end()
      })
    }
    this.conns.clear()
    this.live.clear()
    this.closing = false
  }
}
