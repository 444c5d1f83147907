// `labctl trivy exporter`: an HTTP service with /metrics (every target, from the cache) and
// /probe?target=NAME (one target, blackbox_exporter style: run now unless a run is fresh or going).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { isIP } from 'node:net'
import { LabctlError, UsageError, oneLine } from '../errors.js'
import type { Inventory } from '../inventory/schema.js'
import { redactText } from '../redact.js'
import type { ProbeBackend, ProbeKind } from './model.js'
import { renderMetrics } from './render.js'
import { Scheduler, type JobSpec } from './scheduler.js'

export const DEFAULT_LISTEN = '127.0.0.1:9934'
const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

export type ExporterOptions = {
  inventory: Inventory
  backend: ProbeBackend
  listen: string
  httpIntervalMs: number
  sshIntervalMs: number
  /** Deadline of one HTTP probe run (all its parts) and of one SSH probe run. */
  httpTimeoutMs: number
  sshTimeoutMs: number
  /** /probe runs a target's probe at most this often; requests in between get the last result. */
  probeMinAgeMs: number
  log?: (line: string) => void
  staggerMs?: number
}

export type Exporter = { url: string; address: string; port: number; scheduler: Scheduler; close: () => Promise<void> }

/** "HOST:PORT", ":PORT" (all addresses) or "[V6]:PORT" → host and port; bad input is a usage error. */
export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]*)):(\d{1,5})$/.exec(listen.trim())
  const port = m ? Number(m[3]) : NaN
  if (!m || !(port >= 0 && port <= 65535)) {
    throw new UsageError(`--listen "${oneLine(listen, 80)}" is not HOST:PORT`, { suggestion: `e.g. --listen ${DEFAULT_LISTEN}, --listen :9934 or --listen [::1]:9934` })
  }
  const host = m[1] ?? m[2] ?? ''
  if (m[1] && isIP(m[1]) !== 6) throw new UsageError(`--listen "${oneLine(listen, 80)}": ${m[1]} is not an IPv6 address`, { suggestion: 'e.g. --listen [::1]:9934' })
  return { host: host === '' ? '::' : host, port }
}

/** Starts the probes and the HTTP server; resolves once it listens. close() stops both. */
export async function startExporter(o: ExporterOptions): Promise<Exporter> {
  const { host, port } = parseListen(o.listen)
  const secrets = o.backend.secrets
  const log = (line: string): void => o.log?.(oneLine(redactText(line, secrets), 1000))
  const specs: Array<JobSpec<unknown>> = []
  for (const t of o.backend.targets) {
    if (t.http) specs.push({ target: t.name, kind: 'http', intervalMs: o.httpIntervalMs, timeoutMs: o.httpTimeoutMs, run: (signal) => o.backend.http(t.name, signal) })
    if (t.ssh) specs.push({ target: t.name, kind: 'ssh', intervalMs: o.sshIntervalMs, timeoutMs: o.sshTimeoutMs, run: (signal) => o.backend.ssh(t.name, signal) })
  }
  const scheduler = new Scheduler(specs, { log, secrets, ...(o.staggerMs !== undefined ? { staggerMs: o.staggerMs } : {}) })
  const requests = new Map<string, number>()
  const KNOWN_PATHS = new Set(['/', '/metrics', '/probe', '/healthz'])

  const send = (res: ServerResponse, path: string, code: number, body: string, type = 'text/plain; charset=utf-8'): void => {
    const key = `${KNOWN_PATHS.has(path) ? path : 'other'} ${code}`
    requests.set(key, (requests.get(key) ?? 0) + 1)
    const text = redactText(body, secrets)
    res.writeHead(code, { 'content-type': type, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' })
    res.end(res.req.method === 'HEAD' ? undefined : text)
  }

  async function probe(url: URL, res: ServerResponse): Promise<void> {
    const params = [...url.searchParams.keys()]
    const unknown = params.filter((k) => k !== 'target' && k !== 'module')
    if (unknown.length) return send(res, '/probe', 400, `unknown query parameter "${oneLine(unknown[0]!, 40)}": use /probe?target=NAME[&module=http|ssh]\n`)
    const targets = url.searchParams.getAll('target')
    const modules = url.searchParams.getAll('module')
    if (targets.length !== 1 || !targets[0]) return send(res, '/probe', 400, 'exactly one target is needed: /probe?target=NAME[&module=http|ssh]\n')
    if (modules.length > 1) return send(res, '/probe', 400, 'at most one module: http or ssh\n')
    const target = targets[0]
    const kind = (modules[0] ?? 'http') as ProbeKind
    if (kind !== 'http' && kind !== 'ssh') return send(res, '/probe', 400, `unknown module "${oneLine(kind, 40)}": http or ssh\n`)
    const known = o.backend.targets.map((t) => t.name)
    if (!known.includes(target)) return send(res, '/probe', 404, `unknown target "${oneLine(target, 80)}": known targets are ${known.join(', ')}\n`)
    if (!scheduler.has(target, kind)) return send(res, '/probe', 404, `target "${target}" has no ${kind} probe (${kind === 'http' ? 'no debugUrl in the inventory' : 'SSH probes are off'})\n`)
    const state = await scheduler.fresh(target, kind, o.probeMinAgeMs)
    send(res, '/probe', 200, renderMetrics({ inventory: o.inventory, states: [state] }), CONTENT_TYPE)
  }

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let url: URL
    try {
      url = new URL(req.url ?? '/', 'http://exporter.invalid')
    } catch {
      return send(res, 'other', 400, 'malformed request URL\n')
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD')
      return send(res, KNOWN_PATHS.has(url.pathname) ? url.pathname : 'other', 405, `method ${oneLine(req.method ?? '', 20)} not allowed: GET or HEAD\n`)
    }
    switch (url.pathname) {
      case '/metrics':
        return send(
          res,
          '/metrics',
          200,
          renderMetrics({ inventory: o.inventory, states: scheduler.states(), exporter: { requests, httpIntervalS: o.httpIntervalMs / 1000, sshIntervalS: o.sshIntervalMs / 1000 } }),
          CONTENT_TYPE,
        )
      case '/probe':
        return probe(url, res)
      case '/healthz':
        return send(res, '/healthz', 200, 'ok\n')
      case '/':
        return send(
          res,
          '/',
          200,
          `labctl trivy exporter (lab ${o.inventory.name})\n/metrics  every target, from the probes' cache\n/probe?target=NAME[&module=http|ssh]  one target: ${o.backend.targets.map((t) => t.name).join(', ')}\n`,
        )
      default:
        return send(res, 'other', 404, `no such path: /metrics, /probe?target=NAME, /healthz\n`)
    }
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      log(`internal error serving ${oneLine(req.url ?? '', 100)}: ${err instanceof Error ? err.message : String(err)}`)
      if (!res.headersSent) send(res, 'other', 500, 'internal error (see the exporter log)\n')
      else res.destroy()
    })
  })
  // A client that never finishes its request is cut off; so is one that keeps a socket idle.
  server.requestTimeout = 10_000
  server.headersTimeout = 5_000
  server.keepAliveTimeout = 5_000
  server.maxHeadersCount = 50
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n')
    else socket.destroy()
  })

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      const why = err.code === 'EADDRINUSE' ? 'the address is in use' : err.code === 'EACCES' ? 'permission denied' : err.code === 'EADDRNOTAVAIL' ? 'no such local address' : oneLine(err.message)
      reject(new LabctlError(`cannot listen on ${o.listen}: ${why}`, { code: 'LISTEN', suggestion: 'pick another --listen HOST:PORT' }))
    }
    server.once('error', onError)
    server.listen(port, host, () => {
      server.off('error', onError)
      resolve()
    })
  })
  server.on('error', (err) => log(`HTTP server error: ${err.message}`))
  scheduler.start()
  const addr = server.address()
  const boundPort = typeof addr === 'object' && addr ? addr.port : port
  const shown = host.includes(':') ? `[${host}]` : host
  let closing: Promise<void> | undefined
  return {
    url: `http://${shown === '[::]' ? '127.0.0.1' : shown}:${boundPort}`,
    address: host,
    port: boundPort,
    scheduler,
    close: () =>
      (closing ??= (async () => {
        const stopped = new Promise<void>((r) => server.close(() => r()))
        server.closeAllConnections()
        await scheduler.stop()
        await o.backend.close()
        await stopped
      })()),
  }
}
