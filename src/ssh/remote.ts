// The per-run SSH session: a command creates one `Remote`, passes it to every service in its options
// (`remote`), and closes it in `finally`. It holds one connection per host (opened on first use,
// shared by every step; concurrent first uses open it once) and nothing else: no module state.
import { homedir } from 'node:os'
import { join } from 'node:path'
import { LabctlError } from '../errors.js'
import { SshConfig } from './config.js'
import { type Client, type Conn, type ConnectOptions, closeConnection, openConnection } from './connect.js'
import { type ExecDefaults, type RunOptions, type RunResult, runArgv, toRunResult } from './exec.js'
import { type ReadFileOptions, type WriteFileOptions, readRemoteFile, writeRemoteFile } from './files.js'
import { type ResolvedTarget, type SshHost, isScannerHost, resolveTarget, useSudo } from './target.js'

export type RemoteOptions = ConnectOptions &
  ExecDefaults & {
    /** ssh client config; default ~/.ssh/config; null ignores it. */
    sshConfigFile?: string | null
    /** Environment to read HOME and SSH_AUTH_SOCK from (default process.env). */
    env?: NodeJS.ProcessEnv
    /** Default connect timeout when the target gives none (ms). */
    connectTimeoutMs?: number
  }

export class Remote {
  private readonly conns = new Map<string, Promise<Conn>>()
  private readonly live = new Set<Conn>()
  private readonly opts: RemoteOptions
  private readonly env: NodeJS.ProcessEnv
  private readonly home: string
  private sshConfig?: SshConfig
  private closing = false
  /** Completed SSH handshakes (including jump hosts), for diagnostics and tests. */
  handshakes = 0

  constructor(opts: RemoteOptions = {}) {
    this.opts = opts
    this.env = opts.env ?? process.env
    this.home = this.env.HOME || homedir()
  }

  private config(): SshConfig {
    if (!this.sshConfig) {
      const file = this.opts.sshConfigFile === undefined ? join(this.home, '.ssh', 'config') : this.opts.sshConfigFile
      this.sshConfig = file === null ? SshConfig.empty(this.home) : SshConfig.load(file, this.home)
    }
    return this.sshConfig
  }

  /** Applies ~/.ssh/config and defaults to a host. */
  resolve(h: SshHost): ResolvedTarget {
    return resolveTarget(h, { config: this.config(), home: this.home, agentSocket: this.env.SSH_AUTH_SOCK, connectTimeoutMs: this.opts.connectTimeoutMs })
  }

  /** The session's connection to a host, opened on first use. */
  async connect(h: SshHost): Promise<{ target: ResolvedTarget; client: Client }> {
    const c = await this.conn(this.resolve(h))
    return { target: c.target, client: c.client }
  }

  private conn(r: ResolvedTarget): Promise<Conn> {
    if (this.closing) return Promise.reject(new LabctlError('SSH connections are being closed', { code: 'SSH_CLOSING', suggestion: 'this is a labctl bug: a step ran after the command finished' }))
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
    const jump = r.jump ? await this.conn(r.jump) : undefined
    const conn = await openConnection(r, this.opts, jump, (closed) => {
      this.live.delete(closed)
      // Forget a dead connection so that the next step reconnects.
      const p = this.conns.get(r.key)
      if (p) void p.then((c) => c === closed && this.conns.get(r.key) === p && this.conns.delete(r.key)).catch(() => undefined)
    })
    this.handshakes++
    this.live.add(conn)
    return conn
  }

  private fileContext(h: SshHost): ExecDefaults & { hostSudo: boolean } {
    return { ...this.opts, hostSudo: !isScannerHost(h) || h.sudo }
  }

  /** Runs ARGV on the host (each element one literal word), on the session's connection. */
  async run(h: SshHost, argv: readonly string[], o: RunOptions = {}): Promise<RunResult> {
    const c = await this.conn(this.resolve(h))
    return toRunResult(c, argv, await runArgv(c, argv, { ...o, sudo: useSudo(h, o.sudo) }, this.opts), o.check)
  }

  /** Atomically replaces PATH on the host (see files.ts); the content never appears in a command line. */
  async writeFile(h: SshHost, path: string, content: string | Buffer, o: WriteFileOptions): Promise<void> {
    const c = await this.conn(this.resolve(h))
    await writeRemoteFile(c, path, content, o, this.fileContext(h))
  }

  /** Reads a remote file: over SFTP, or `sudo -n cat` when SUDO (and not root). */
  async readFile(h: SshHost, path: string, o: ReadFileOptions = {}): Promise<Buffer> {
    const c = await this.conn(this.resolve(h))
    return readRemoteFile(c, path, o, this.fileContext(h))
  }

  /** Closes every connection (targets before the jump hosts they go through). Idempotent. */
  async close(graceMs = 2000): Promise<void> {
    this.closing = true
    const settled = await Promise.allSettled([...this.conns.values()])
    const conns = [...new Set([...settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : [])), ...this.live])]
    const depth = (r: ResolvedTarget): number => (r.jump ? 1 + depth(r.jump) : 0)
    conns.sort((a, b) => depth(b.target) - depth(a.target))
    for (const c of conns) await closeConnection(c, graceMs)
    this.conns.clear()
    this.live.clear()
    this.closing = false
  }
}
