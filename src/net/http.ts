import { isIP } from 'node:net'
import { gunzipSync } from 'node:zlib'
import { Agent, request, type Dispatcher } from 'undici'
import { LabctlError, oneLine } from '../errors.js'
import { resolveName } from './dns.js'
import { readBoundedText } from '../fs/read-bounded.js'

export type LabHttpOptions = {
  /** Lab DNS servers: names are resolved there first, then by the system resolver. */
  dnsServers?: string[]
  dnsTimeoutMs?: number
  /** PEM CA bundle file to verify TLS against (default: the system store). */
  caFile?: string | undefined
  connectTimeoutMs?: number
}

/**
 * An undici Agent that resolves the lab's names through the lab's DNS servers, so a workstation
 * whose resolver does not know the lab (or the sandbox) still reaches the right address.
 */
export function labAgent(opts: LabHttpOptions): Agent {
  const ca = opts.caFile ? readBoundedText(opts.caFile, 'ca-bundle') : undefined
  const servers = opts.dnsServers ?? []
  return new Agent({
    connectTimeout: opts.connectTimeoutMs ?? 5000,
    connect: {
      ...(ca ? { ca } : {}),
      lookup: (hostname, options, callback) => {
        const cb = callback as (err: Error | null, address: string | Array<{ address: string; family: number }>, family?: number) => void
        const all = (options as { all?: boolean }).all
        const done = (address: string): void => {
          const family = isIP(address) || 4
          if (all) cb(null, [{ address, family }])
          else cb(null, address, family)
        }
        if (isIP(hostname) || servers.length === 0) {
          import('node:dns').then((dns) => dns.lookup(hostname, options, callback as never))
          return
        }
        resolveName(hostname, servers, opts.dnsTimeoutMs ?? 2000)
          .then((ans) => {
            if (ans.status === 'ok' && ans.addresses[0]) return done(ans.addresses[0])
            import('node:dns').then((dns) =>
              dns.lookup(hostname, options, ((err: NodeJS.ErrnoException | null, ...rest: unknown[]) => {
                if (err) return cb(Object.assign(new Error(`cannot resolve ${hostname}: ${ans.detail}`), { code: 'ENOTFOUND' }), '')
                ;(callback as (...a: unknown[]) => void)(null, ...rest)
              }) as never),
            )
          })
          .catch((err: Error) => cb(err, ''))
      },
    },
  })
}

export type HttpResult = { status: number; headers: Record<string, string | string[] | undefined>; body: string; durationMs: number }

/** One HTTP request with a hard deadline; the body is read up to `maxBytes`. */
export async function httpRequest(
  url: string,
  opts: { method?: Dispatcher.HttpMethod; headers?: Record<string, string>; body?: string; timeoutMs: number; dispatcher?: Dispatcher; maxBytes?: number },
): Promise<HttpResult> {
  const started = performance.now()
  const signal = AbortSignal.timeout(opts.timeoutMs)
  const res = await request(url, {
    method: opts.method ?? 'GET',
    ...(opts.headers ? { headers: opts.headers } : {}),
    ...(opts.body !== undefined ? { body: opts.body } : {}),
    ...(opts.dispatcher ? { dispatcher: opts.dispatcher } : {}),
    signal,
    headersTimeout: opts.timeoutMs,
    bodyTimeout: opts.timeoutMs,
  })
  const max = opts.maxBytes ?? 4 * 1024 * 1024
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of res.body) {
    size += (chunk as Buffer).length
    if (size > max) {
      res.body.destroy()
      throw new LabctlError(`response from ${new URL(url).host} is larger than ${max} bytes`)
    }
    chunks.push(chunk as Buffer)
  }
  let raw = Buffer.concat(chunks)
  if (String(res.headers['content-encoding'] ?? '').includes('gzip')) {
    try {
      raw = gunzipSync(raw, { maxOutputLength: max })
    } catch (err) {
      // A gzip bomb: say what bounded it (the decompressed size), not the few compressed bytes sent.
      if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) {
        throw new LabctlError(`response from ${new URL(url).host} decompresses to more than ${max} bytes (${raw.length} bytes of gzip sent): refused`, { code: 'HTTP_BODY_TOO_LARGE' })
      }
      /* otherwise leave as sent; the caller reports an unreadable body */
    }
  }
  return { status: res.statusCode, headers: res.headers, body: raw.toString('utf8'), durationMs: performance.now() - started }
}

/** Short, printable description of a network error (no stack, no request echo). */
export function describeNetError(err: unknown, timeoutMs?: number): string {
  const e = err as { code?: string; name?: string; message?: string; cause?: { code?: string; message?: string } }
  const code = e.cause?.code ?? e.code
  if (code === 'CHECK_TIMEOUT') return `${e.message ?? 'timed out'}: no answer (a hung server accepts connections and never replies)`
  // No TCP connection at all is not a hung server: the host is down or cut off, or a firewall drops the port.
  if (code === 'UND_ERR_CONNECT_TIMEOUT') return 'no TCP connection (host unreachable or port filtered)'
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return `host unreachable (${code}: no route, or the host does not answer on its network)`
  if (e.name === 'TimeoutError' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'ETIMEDOUT') {
    return `timed out${timeoutMs ? ` after ${timeoutMs} ms` : ''}`
  }
  if (code === 'ECONNREFUSED') return 'connection refused (nothing listens on the port: service down)'
  if (code === 'ENOTFOUND') return oneLine(e.cause?.message ?? e.message ?? 'name not found')
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET') return 'connection reset'
  return oneLine(`${code ? `${code}: ` : ''}${e.cause?.message ?? e.message ?? String(err)}`)
}
