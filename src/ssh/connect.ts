// Connect: one SSH handshake to a resolved target (directly or through a jump host's forwarded
// channel), the host key verified against known_hosts, public-key authentication (explicit key,
// ssh-agent, then ~/.ssh/config's / the default identity files).
import { existsSync } from 'node:fs'
import { connect as tcpConnect, type Socket } from 'node:net'
import type { Client, ClientChannel, SFTPWrapper } from 'ssh2'
import { LabctlError, oneLine } from '../errors.js'
import { connectError, hostKeyChangedError, hostKeyRevokedError, hostKeyUnknownError, type SshErrorContext } from './failures.js'
import { appendKnownHost, hostKeyInfo, lookupKnownHosts, preferredHostKeyAlgorithms, verifyHostKey } from './known-hosts.js'
import type { IdentityFile, ResolvedTarget } from './target.js'
import { describeReadError, readBounded } from '../fs/read-bounded.js'

export type { Client } from 'ssh2'

/**
 * ssh2, loaded on the first connection (after its TCP connect has started, so that sshd accepts and forks
 * while the module loads). CommonJS: take the names off the default export.
 */
async function loadSsh2(): Promise<typeof import('ssh2')> {
  const m = (await import('ssh2')) as typeof import('ssh2') & { default?: typeof import('ssh2') }
  return m.default ?? m
}

/**
 * Starts the TCP connection to R. An error before ssh2 takes the socket over is kept (not thrown: no
 * listener would be there yet) and reported by openConnection as a connect failure.
 */
function preconnect(r: ResolvedTarget): { sock: Socket; early: () => Error | undefined; release: () => void } {
  let early: Error | undefined
  const sock = tcpConnect({ host: r.host, port: r.port })
  const onError = (err: Error): void => {
    early ??= err
  }
  sock.on('error', onError)
  return { sock, early: () => early, release: () => sock.off('error', onError) }
}

/** One open SSH connection, with its channel accounting and its (lazily opened) SFTP session. */
export type Conn = {
  client: Client
  target: ResolvedTarget
  closed: boolean
  sftp?: Promise<SFTPWrapper>
  /** Channels in use, and the commands waiting for one (see exec.ts). */
  active: number
  waiting: Array<() => void>
}

export type ConnectOptions = {
  /** Record the host key of a host that has none in known_hosts yet (never replaces a known key). */
  acceptNewHostKey?: boolean | undefined
  /** Hash the names of entries written to known_hosts (`|1|…`), like HashKnownHosts yes. */
  hashKnownHosts?: boolean | undefined
  keepaliveIntervalMs?: number | undefined
  keepaliveCountMax?: number | undefined
  log?: ((line: string) => void) | undefined
}

/** `^name$` for each algorithm name: ssh2 skips (instead of refusing) a RegExp that matches nothing it supports. */
const exactly = (names: readonly string[]): RegExp[] => names.map((n) => new RegExp(`^${n.replace(/[.+]/g, '\\$&')}$`))

/**
 * The order labctl offers algorithms in: OpenSSH's own preference among what ssh2 implements, fastest first
 * (the server picks the first of ours it supports). Key exchange curve25519-sha256 (OpenSSH's hybrid
 * post-quantum kex is not in ssh2), AES-GCM (hardware AES; no separate MAC) then chacha20-poly1305. The
 * host-key algorithms come from what known_hosts holds for the host (preferredHostKeyAlgorithms): one
 * signature check, no second key exchange for a key type we could not verify anyway.
 * ssh2 keeps its other defaults after these; a name this ssh2 lacks is skipped, never an error.
 */
export const PREFERRED_ALGORITHMS = {
  kex: ['curve25519-sha256', 'curve25519-sha256@libssh.org', 'ecdh-sha2-nistp256'],
  cipher: ['aes128-gcm@openssh.com', 'aes256-gcm@openssh.com', 'chacha20-poly1305@openssh.com'],
  hmac: ['hmac-sha2-256-etm@openssh.com', 'hmac-sha2-512-etm@openssh.com'],
}

function algorithms(hostKeyTypes: readonly string[]): Record<string, unknown> {
  const ordered = (names: readonly string[]) => ({ remove: exactly(names), prepend: exactly(names) })
  return {
    kex: ordered(PREFERRED_ALGORITHMS.kex),
    cipher: ordered(PREFERRED_ALGORITHMS.cipher),
    hmac: ordered(PREFERRED_ALGORITHMS.hmac),
    compress: ['none'],
    serverHostKey: preferredHostKeyAlgorithms(hostKeyTypes),
  }
}

export function lostError(c: Conn, what: string): LabctlError {
  return new LabctlError(`connection to ${c.target.label} was lost ${what}`, {
    code: 'SSH_CONNECTION_LOST',
    suggestion: `check the host and the network; rerun the step`,
  })
}

/**
 * P, or a rejection once the connection is lost before P settles: a request in flight when the connection
 * dies (e.g. keepalive gives up on a cut link) can otherwise stay pending forever, and the run then ends
 * with nothing reported.
 */
export function orLost<T>(c: Conn, p: Promise<T>, what: string): Promise<T> {
  if (c.closed) {
    p.catch(() => undefined)
    return Promise.reject(lostError(c, what))
  }
  return new Promise<T>((resolve, reject) => {
    const onLost = (): void => reject(lostError(c, what))
    c.client.once('close', onLost)
    p.then(
      (v) => {
        c.client.removeListener('close', onLost)
        resolve(v)
      },
      (e: unknown) => {
        c.client.removeListener('close', onLost)
        reject(e)
      },
    )
  })
}

/**
 * Opens a connection to R (through JUMP when given). ONCLOSE runs when the connection closes, at any
 * time, so that the caller can forget it.
 */
export async function openConnection(r: ResolvedTarget, opts: ConnectOptions, jump?: Conn, onClose?: (c: Conn) => void): Promise<Conn> {
  let sock: ClientChannel | Socket | undefined
  let via: string | undefined
  let direct: ReturnType<typeof preconnect> | undefined
  if (jump) {
    via = `via jump host ${jump.target.label}`
    sock = await forward(jump, r)
  } else {
    // TCP first: sshd accepts and forks while ssh2 loads and the keys are read.
    direct = preconnect(r)
    sock = direct.sock
  }
  let ssh2: typeof import('ssh2')
  let auth: ReturnType<typeof authMethods>
  try {
    ssh2 = await loadSsh2()
    auth = authMethods(r, ssh2.utils.parseKey)
  } catch (err) {
    sock.destroy()
    throw err
  }
  const ctx: SshErrorContext = { label: r.label, host: r.host, port: r.port, user: r.user, timeoutMs: r.connectTimeoutMs, triedAuth: auth.skipped.map((s) => `skipped ${s}`), ...(via ? { via } : {}) }
  const known = lookupKnownHosts(r.knownHostsFiles, r.hostKeyNames).filter((e) => e.marker === undefined)
  const client = new ssh2.Client()
  const conn: Conn = { client, target: r, closed: false, active: 0, waiting: [] }
  client.once('handshake', (n: { kex: string; serverHostKey: string; cs: { cipher: string; mac: string } }) => {
    opts.log?.(`ssh: ${r.label}: kex ${n.kex}, host key ${n.serverHostKey}, cipher ${n.cs.cipher}${n.cs.mac ? `, mac ${n.cs.mac}` : ''}`)
  })
  client.on('close', () => {
    conn.closed = true
    onClose?.(conn)
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
        if (opts.acceptNewHostKey) {
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
      opts.log?.(`ssh: ${r.label}: ${oneLine(err.message)}`)
    })
    client.on('close', () => {
      if (!settled) fail(new Error('connection closed before the SSH handshake completed'))
    })
    client.on('ready', () => {
      if (settled) return
      settled = true
      resolve()
    })
    const refused = direct?.early()
    if (refused) {
      sock.destroy()
      return fail(refused)
    }
    try {
      client.connect({
        sock,
        username: r.user,
        readyTimeout: r.connectTimeoutMs,
        keepaliveInterval: opts.keepaliveIntervalMs ?? 15_000,
        keepaliveCountMax: opts.keepaliveCountMax ?? 4,
        hostVerifier,
        authHandler: authHandler as never,
        algorithms: algorithms(known.map((e) => e.key.type)) as never,
      })
    } catch (err) {
      fail(err)
    } finally {
      // ssh2 listens on the socket now.
      direct?.release()
    }
  })

  if (acceptBlob) {
    const lines = appendKnownHost(r.knownHostsWriteFile, r.hostKeyNames, acceptBlob, { hash: opts.hashKnownHosts ?? false })
    const info = hostKeyInfo(acceptBlob)
    opts.log?.(`ssh: recorded host key of ${r.label} (${info.label} ${info.fingerprint}) in ${r.knownHostsWriteFile}: ${lines.length} line(s)`)
  }
  if (conn.closed) throw lostError(conn, 'right after connecting')
  opts.log?.(`ssh: connected to ${r.label}${via ? ` ${via}` : ''}`)
  return conn
}

/** A TCP channel from the jump host to R (ssh -J). */
function forward(jump: Conn, r: ResolvedTarget): Promise<ClientChannel> {
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

/** The authentication methods to try, in order: explicit key, ssh-agent, then the other identity files. */
function authMethods(r: ResolvedTarget, parseKey: typeof import('ssh2').utils.parseKey): { methods: Array<{ describe: string; method: unknown }>; skipped: string[] } {
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
    const parsed = parseKey(buf)
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
  r.identityFiles.filter((f) => f.explicit).forEach(keyMethod)
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

/** Ends CONN (destroying it after GRACEMS). */
export function closeConnection(c: Conn, graceMs: number): Promise<void> {
  if (c.closed) return Promise.resolve()
  return new Promise<void>((resolve) => {
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
