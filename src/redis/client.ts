// A minimal Redis client (RESP2 over TCP or TLS) for the fleet checks: AUTH, INFO, TTL. One connection,
// one command at a time, every command under a deadline, answers bounded in size. The password goes
// over the connection only (AUTH), never into a message, a log or an argv.
import { connect as tcpConnect, type Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { LabctlError, oneLine } from '../errors.js'
import { redactText } from '../redact.js'

export type RespValue = string | number | null | RespValue[] | { error: string }

const MAX_REPLY = 1024 * 1024

/** Parses one RESP2 value at OFFSET; undefined when BUF holds only part of it. */
export function parseResp(buf: Buffer, offset = 0): { value: RespValue; next: number } | undefined {
  const eol = buf.indexOf('\r\n', offset)
  if (eol < 0) return undefined
  const type = String.fromCharCode(buf[offset]!)
  const line = buf.toString('utf8', offset + 1, eol)
  const after = eol + 2
  switch (type) {
    case '+':
      return { value: line, next: after }
    case '-':
      return { value: { error: line }, next: after }
    case ':':
      return { value: Number(line), next: after }
    case '$': {
      const len = Number(line)
      if (len < 0) return { value: null, next: after }
      if (buf.length < after + len + 2) return undefined
      return { value: buf.toString('utf8', after, after + len), next: after + len + 2 }
    }
    case '*': {
      const n = Number(line)
      if (n < 0) return { value: null, next: after }
      const items: RespValue[] = []
      let at = after
      for (let i = 0; i < n; i++) {
        const r = parseResp(buf, at)
        if (!r) return undefined
        items.push(r.value)
        at = r.next
      }
      return { value: items, next: at }
    }
    default:
      throw new LabctlError(`not a Redis answer (starts with "${oneLine(buf.toString('utf8', offset, Math.min(buf.length, offset + 20)), 20)}")`, { code: 'REDIS_PROTOCOL', suggestion: 'check that trivy.cacheBackend names a Redis server (host and port)' })
  }
}

/** A command as RESP: an array of bulk strings. */
export function encodeCommand(args: readonly string[]): Buffer {
  return Buffer.from(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`)
}

/** `INFO` text → its key/value pairs. */
export function parseInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const line of text.split(/\r?\n/)) {
    if (!line || line.startsWith('#')) continue
    const i = line.indexOf(':')
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1)
  }
  return out
}

export type RedisTarget = { host: string; port: number; tls: boolean; db: number; username?: string }

/** trivy.cacheBackend redis://HOST[:PORT][/DB] or rediss://… → where to connect (credentials are never in it). */
export function redisTarget(url: string): RedisTarget {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    throw new LabctlError('trivy.cacheBackend is not a valid redis:// URL', { code: 'REDIS_URL', exitCode: 2, suggestion: 'write it as redis://HOST:6379 (the password goes in the secrets dir, file redis-password)' })
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new LabctlError(`trivy.cacheBackend is ${u.protocol}, not redis:// or rediss://`, { code: 'REDIS_URL', exitCode: 2 })
  const db = u.pathname.replace(/^\//, '')
  return { host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port || 6379), tls: u.protocol === 'rediss:', db: db ? Number(db) : 0, ...(u.username ? { username: decodeURIComponent(u.username) } : {}) }
}

export type RedisSession = { command(args: readonly string[]): Promise<RespValue>; close(): void; where: string }

/**
 * Connects, authenticates (AUTH [user] PASSWORD when a password is given) and selects the DB. Errors are
 * one line naming host:port, with the password redacted from anything the server said.
 */
export async function openRedis(t: RedisTarget, o: { password?: string | undefined; timeoutMs: number; ca?: string | undefined; servername?: string | undefined; connect?: { host: string; port: number } }): Promise<RedisSession> {
  const where = `${t.host}:${t.port}`
  const host = o.connect?.host ?? t.host
  const port = o.connect?.port ?? t.port
  const secrets = o.password ? [o.password] : []
  const sock: Socket = await new Promise((resolve, reject) => {
    const s = t.tls ? tlsConnect({ host, port, servername: o.servername ?? t.host, ...(o.ca ? { ca: o.ca } : {}) }) : tcpConnect({ host, port })
    const timer = setTimeout(() => {
      s.destroy()
      reject(new LabctlError(`Redis at ${where} did not accept a connection within ${o.timeoutMs} ms`, { code: 'REDIS_TIMEOUT', suggestion: `check that redis-server runs there and that the firewall lets this machine and the scanner hosts reach port ${t.port}` }))
    }, o.timeoutMs)
    s.once(t.tls ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer)
      s.removeAllListeners('error')
      resolve(s)
    })
    s.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      const why = e.code === 'ECONNREFUSED' ? 'refused the connection' : e.code === 'EHOSTUNREACH' || e.code === 'ENETUNREACH' ? 'is unreachable' : `cannot be reached (${e.code ?? oneLine(e.message, 100)})`
      reject(new LabctlError(`Redis at ${where} ${why}`, { code: 'REDIS_CONNECT', suggestion: 'start redis-server (`systemctl start redis-server` on the redis machine), or fix trivy.cacheBackend' }))
    })
  })
  let buf = Buffer.alloc(0)
  let waiting: { resolve: (v: RespValue) => void; reject: (e: Error) => void } | undefined
  let broken: Error | undefined
  const failAll = (e: Error): void => {
    broken ??= e
    waiting?.reject(e)
    waiting = undefined
  }
  sock.on('data', (c: Buffer) => {
    buf = Buffer.concat([buf, c])
    if (buf.length > MAX_REPLY) return failAll(new LabctlError(`Redis at ${where} answered more than ${MAX_REPLY} bytes`, { code: 'REDIS_PROTOCOL' }))
    try {
      const r = parseResp(buf)
      if (!r) return
      buf = buf.subarray(r.next)
      const w = waiting
      waiting = undefined
      w?.resolve(r.value)
    } catch (e) {
      failAll(e as Error)
    }
  })
  sock.on('error', (e) => failAll(new LabctlError(`Redis at ${where}: ${oneLine(e.message, 120)}`, { code: 'REDIS_CONNECT' })))
  sock.on('close', () => failAll(new LabctlError(`Redis at ${where} closed the connection`, { code: 'REDIS_CONNECT' })))
  const command = (args: readonly string[]): Promise<RespValue> =>
    new Promise((resolve, reject) => {
      if (broken) return reject(broken)
      const timer = setTimeout(() => {
        waiting = undefined
        reject(new LabctlError(`Redis at ${where} did not answer ${args[0]} within ${o.timeoutMs} ms`, { code: 'REDIS_TIMEOUT', suggestion: 'check the Redis server (a blocked or overloaded redis-server?)' }))
      }, o.timeoutMs)
      waiting = {
        resolve: (v) => {
          clearTimeout(timer)
          resolve(v)
        },
        reject: (e) => {
          clearTimeout(timer)
          reject(e)
        },
      }
      sock.write(encodeCommand(args))
    })
  const session: RedisSession = { command, close: () => sock.destroy(), where }
  try {
    if (o.password) {
      const r = await command(t.username ? ['AUTH', t.username, o.password] : ['AUTH', o.password])
      if (isError(r)) {
        throw new LabctlError(`Redis at ${where} rejected the credentials: ${redactText(oneLine(r.error, 160), secrets)}`, { code: 'REDIS_AUTH', suggestion: 'put the password of the Redis (its requirepass) in the secrets dir, file redis-password (mode 0600)' })
      }
    }
    if (t.db) {
      const r = await command(['SELECT', String(t.db)])
      if (isError(r)) throw new LabctlError(`Redis at ${where} refused SELECT ${t.db}: ${oneLine(r.error, 120)}`, { code: 'REDIS_DB' })
    }
    return session
  } catch (e) {
    session.close()
    throw e
  }
}

export function isError(v: RespValue): v is { error: string } {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && 'error' in v
}
