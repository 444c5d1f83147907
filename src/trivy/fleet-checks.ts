// Validate for a fleet: the checks that only make sense with several scanner hosts behind one edge, a
// shared Redis scan cache, or an `edge:` section — added to `labctl trivy validate`'s plan by planChecks.
//   cache  a blob put through each host is seen by every other host (Twirp MissingBlobs): one PutBlob per
//          host, one MissingBlobs per host listing every blob, so 2N calls cover the N×N pairs
//   redis  the Redis cache answers with the configured credentials; memory used vs maxmemory; whether the
//          hosts set a TTL on what they write (the TTL of the very blobs the cache check put)
//   edge   how many of the backend's servers are UP at the edge; "degraded" (a failed check naming the
//          host, exit 3) when a host is down while the edge still serves from the others
// The verdicts are pure functions (cacheVerdict, redisVerdict, edgeVerdicts), tested on their own.
import { randomBytes } from 'node:crypto'
import type { Dispatcher } from 'undici'
import type { Edge, EdgeServer } from '../edge/index.js'
import type { Inventory, ScannerHost } from '../inventory/schema.js'
import { isError, openRedis, parseInfo, redisTarget, type RespValue } from '../redis/client.js'
import { usesRedis } from '../redis/secret.js'
import { fail, pass, skip, warn, type CheckSpec } from '../checks/types.js'
import { describeAnswer, twirp } from './api.js'
import { directBase } from './endpoint.js'

export const FLEET_CHECK_NAMES = ['cache', 'redis', 'edge'] as const
export type FleetCheckName = (typeof FLEET_CHECK_NAMES)[number]
type Verdict = ReturnType<typeof pass> | ReturnType<typeof fail> | ReturnType<typeof warn> | ReturnType<typeof skip>

/** Whether the cache check applies: several hosts, or one host on a Redis cache. */
export const cacheCheckApplies = (inv: Inventory, hosts: readonly ScannerHost[]): boolean => hosts.length > 1 || usesRedis(inv)

// ---------------------------------------------------------------- verdicts (pure)

const list = (xs: readonly string[]): string => xs.join(', ')

/**
 * READER's verdict: which writers' blobs it does not see. Hosts on fs/memory caches behind one edge
 * cannot share: a client's layers PutBlob'd through one host are missing when its Scan lands on another.
 */
export function cacheVerdict(o: { reader: string; writers: readonly string[]; missingFrom: readonly string[]; backend: string; hostCount: number }): Verdict {
  const others = o.writers.filter((w) => w !== o.reader)
  const missOthers = o.missingFrom.filter((w) => w !== o.reader)
  if (o.missingFrom.includes(o.reader)) {
    return fail(`${o.reader} does not see the blob it was just given (PutBlob answered, MissingBlobs still lists it): its scan cache does not keep what it is given`, `check the cache on ${o.reader}: \`labctl trivy status --host ${o.reader}\` (a full disk, or a Redis refusing writes: \`labctl trivy validate --only redis\`)`)
  }
  if (missOthers.length === 0) return pass(others.length ? `sees the blobs put through ${list(others)}: the scan cache is shared` : `keeps what it is given (cache ${o.backend.startsWith('redis') ? 'redis' : o.backend})`)
  if (o.backend === 'fs' || o.backend === 'memory') {
    return fail(
      `does not see the blobs put through ${list(missOthers)}: the ${o.hostCount} hosts behind one edge have separate ${o.backend} caches, so a client's layers put on one host are missing on the next ("layer cache missing")`,
      'share one Redis scan cache: set trivy.cacheBackend: redis://HOST:6379 (password in the secrets dir, file redis-password) and trivy.cacheTtl, then `labctl trivy install` on every host; or keep only one host behind the edge',
    )
  }
  return fail(
    `does not see the blobs put through ${list(missOthers)}, although the inventory says every host uses ${o.backend.replace(/\/\/[^@/]*@/, '//')}: those hosts write to another cache`,
    `check TRIVY_CACHE_BACKEND in ${'the env file'} of ${list([o.reader, ...missOthers])} (\`labctl trivy install --dry-run\` shows the difference), then restart them`,
  )
}

export type RedisFacts = { version?: string; usedBytes: number; maxBytes: number; policy?: string; ttl: Array<{ host: string; seconds: number | 'missing' }> }

const mib = (n: number): string => `${(n / 1024 / 1024).toFixed(1)} MiB`

/** The Redis verdict: memory used vs maxmemory, the eviction policy, and whether each host sets a TTL. */
export function redisVerdict(f: RedisFacts, o: { cacheTtl?: string | undefined }): Verdict {
  const noTtl = f.ttl.filter((t) => t.seconds === -1).map((t) => t.host)
  const ttlText = f.ttl.length ? `; TTL of fresh blobs: ${f.ttl.map((t) => `${t.host} ${t.seconds === -1 ? 'none' : t.seconds === 'missing' ? 'not in this Redis' : `${t.seconds} s`}`).join(', ')}` : ''
  const pct = f.maxBytes > 0 ? (100 * f.usedBytes) / f.maxBytes : 0
  const mem = f.maxBytes > 0 ? `${mib(f.usedBytes)} of maxmemory ${mib(f.maxBytes)} (${pct.toFixed(0)}%, policy ${f.policy ?? '?'})` : `${mib(f.usedBytes)} used, no maxmemory`
  const detail = `Redis ${f.version ?? '?'}: ${mem}${ttlText}`
  const ttlFix = 'set trivy.cacheTtl (e.g. 24h: TRIVY_CACHE_TTL, `trivy server --cache-ttl`) and run `labctl trivy install` on every host'
  const full = f.maxBytes > 0 && pct >= 98 && (f.policy ?? 'noeviction') === 'noeviction'
  if (full) return fail(`${detail}: full, and with noeviction Redis refuses every write, so every scan fails (OOM command not allowed)`, noTtl.length || !o.cacheTtl ? ttlFix : 'raise maxmemory, or set maxmemory-policy volatile-ttl so entries with a TTL make room')
  if (noTtl.length) return (f.maxBytes > 0 && pct >= 80 ? fail : warn)(`${detail}: ${list(noTtl)} write${noTtl.length === 1 ? 's' : ''} cache entries without a TTL, so the Redis only grows until it is full and every scan fails`, ttlFix)
  if (f.maxBytes > 0 && pct >= 80) return warn(`${detail}: above 80%`, 'raise maxmemory, or lower trivy.cacheTtl')
  if (f.maxBytes === 0) return warn(`${detail}: without maxmemory it grows until the machine runs out of memory`, 'set maxmemory (and maxmemory-policy volatile-ttl) in redis.conf')
  return pass(detail)
}

/** One verdict for the backend, one per inventory host; a host down while others serve is "degraded". */
export function edgeVerdicts(servers: readonly EdgeServer[], hosts: readonly string[], backend: string): { backend: Verdict; hosts: Map<string, Verdict> } {
  const byName = new Map(servers.map((s) => [s.name, s]))
  const up = servers.filter((s) => s.up).map((s) => s.name)
  const out = new Map<string, Verdict>()
  const serving = up.length > 0
  for (const h of hosts) {
    const s = byName.get(h)
    if (!s) {
      out.set(h, fail(`not in the edge backend ${backend} (it lists ${list(servers.map((x) => x.name)) || 'no server'})`, 'add it: render the backend with `labctl trivy install --haproxy FILE` and load it on the edge'))
      continue
    }
    const state = `${s.status}${s.check ? ` (${s.check})` : ''}, ${s.inFlight} in flight`
    if (s.up) out.set(h, pass(`UP at the edge: ${state}`))
    else if (s.admin === 'drain' || s.admin === 'maint') out.set(h, warn(`taken out at the edge (${s.admin}): ${state}`, `a rolling operation in progress or left behind: when ${h} is proven, \`set server ${backend}/${h} state ready\` on the edge`))
    else {
      out.set(
        h,
        fail(
          `${serving ? 'degraded: ' : ''}${h} is ${s.status} at the edge: ${state}${serving ? `; the edge still serves from ${list(up)}` : ''}`,
          `check the service on ${h}: \`labctl trivy status --host ${h}\``,
        ),
      )
    }
  }
  const extra = servers.filter((s) => !hosts.includes(s.name)).map((s) => s.name)
  const down = servers.filter((s) => !s.up).map((s) => s.name)
  const head = `${up.length}/${servers.length} UP in ${backend}${down.length ? ` (down or out: ${list(down)})` : ''}${extra.length ? `; not in the inventory: ${list(extra)}` : ''}`
  const be = !serving
    ? fail(`${head}: the edge serves nothing`, 'bring a host back: `labctl trivy status`')
    : down.length || extra.length
      ? warn(`${head}: degraded`, down.length ? `see the per-host edge checks for ${list(down)}` : 'remove the extra servers from the backend, or add them to trivy.hosts')
      : pass(head)
  return { backend: be, hosts: out }
}

// ---------------------------------------------------------------- the specs

export type FleetCheckContext = {
  inv: Inventory
  hosts: readonly ScannerHost[]
  wanted: (c: FleetCheckName) => boolean
  dispatcher: Dispatcher
  timeoutMs: number
  token?: string | undefined
  /** Why the token may not be sent to this base URL (plain HTTP off the allowed networks), else undefined. */
  tokenRefused: (url: URL) => Promise<string | undefined>
  redisPassword?: string | undefined
  /** The lab CA (PEM) for rediss://. */
  redisCa?: string | undefined
  edge?: Edge | undefined
}

const blobId = (): string => `sha256:${randomBytes(32).toString('hex')}`

/** The fleet checks to add to validate's plan, and a cleanup that deletes the probe blobs. */
export function fleetChecks(ctx: FleetCheckContext): { specs: CheckSpec[]; cleanup: () => Promise<void> } {
  const { inv } = ctx
  const specs: CheckSpec[] = []
  const tw = (base: string) => ({ baseUrl: base, token: ctx.token, tokenHeader: inv.trivy.tokenHeader, dispatcher: ctx.dispatcher, timeoutMs: ctx.timeoutMs })
  const direct = ctx.hosts.flatMap((h) => (directBase(h) ? [{ name: h.name, base: directBase(h)! }] : []))
  const blobs = new Map(direct.map((h) => [h.name, blobId()]))

  // The put phase, once for every reader: a blob through each host (schema_version 2, else it counts as missing).
  let puts: Promise<{ writers: string[]; refused: Map<string, string> }> | undefined
  const putAll = (): Promise<{ writers: string[]; refused: Map<string, string> }> =>
    (puts ??= (async () => {
      const refused = new Map<string, string>()
      const writers: string[] = []
      await Promise.all(
        direct.map(async (h) => {
          const why = await ctx.tokenRefused(new URL(h.base))
          if (why) return void refused.set(h.name, why)
          const res = await twirp('trivy.cache.v1.Cache/PutBlob', { diff_id: blobs.get(h.name), blob_info: { schema_version: 2, os: { family: 'alpine', name: '3.10.2' } } }, tw(h.base)).catch((e: Error) => e)
          if (res instanceof Error) refused.set(h.name, `PutBlob failed: ${res.message}`)
          else if (res.status !== 200) refused.set(h.name, `PutBlob answered ${res.status === 401 ? '401 (token rejected)' : describeAnswer(res, ctx.token ? [ctx.token] : [])}`)
          else writers.push(h.name)
        }),
      )
      // In inventory order, whatever order the answers came in.
      const order = direct.map((d) => d.name)
      writers.sort((x, y) => order.indexOf(x) - order.indexOf(y))
      return { writers, refused }
    })())

  const cacheOn = ctx.wanted('cache') && cacheCheckApplies(inv, ctx.hosts)
  if (cacheOn) {
    for (const h of ctx.hosts) {
      const base = directBase(h)
      specs.push({
        check: 'cache',
        name: `cache ${h.name}`,
        host: h.name,
        timeoutMs: ctx.timeoutMs * 3,
        fix: `check the service on ${h.name}: \`labctl trivy status --host ${h.name}\``,
        run: async () => {
          if (!base) return skip('no direct URL (debugUrl) for this host: its cache cannot be asked on its own')
          if (!ctx.token) return skip('no token: the cache API needs it')
          const { writers, refused } = await putAll()
          if (refused.has(h.name)) return fail(`could not put a probe blob through ${h.name}: ${refused.get(h.name)}`, `check the service and token on ${h.name}: \`labctl trivy validate --only scan,auth --host ${h.name}\``)
          if (writers.length === 0) return skip('no host took a probe blob')
          const ids = writers.map((w) => blobs.get(w)!)
          const res = await twirp('trivy.cache.v1.Cache/MissingBlobs', { artifact_id: blobId(), blob_ids: ids }, tw(base))
          if (res.status !== 200) return fail(`MissingBlobs answered ${describeAnswer(res, ctx.token ? [ctx.token] : [])}`)
          const missing = new Set<string>(((JSON.parse(res.body) as { missing_blob_ids?: string[] }).missing_blob_ids ?? []))
          const missingFrom = writers.filter((w) => missing.has(blobs.get(w)!))
          const v = cacheVerdict({ reader: h.name, writers, missingFrom, backend: inv.trivy.cacheBackend, hostCount: ctx.hosts.length })
          const skipped = [...refused.keys()].filter((k) => k !== h.name)
          return skipped.length && v.status === 'pass' ? { ...v, detail: `${v.detail} (not probed: ${list(skipped)})` } : v
        },
      })
    }
  }

  if (ctx.wanted('redis') && usesRedis(inv)) {
    const t = redisTarget(inv.trivy.cacheBackend)
    specs.push({
      check: 'redis',
      name: `redis ${t.host}:${t.port}`,
      host: 'redis',
      timeoutMs: ctx.timeoutMs * 4,
      fix: `check the Redis at ${t.host}:${t.port} (\`systemctl status redis-server\` there)`,
      run: async () => {
        const r = await openRedis(t, { password: ctx.redisPassword, timeoutMs: ctx.timeoutMs, ca: ctx.redisCa })
        try {
          const ping = await r.command(['PING'])
          if (isError(ping)) {
            const noAuth = /NOAUTH|WRONGPASS/.test(ping.error)
            return fail(`Redis at ${r.where} answers, but refuses commands: ${ping.error.split(' ')[0]}`, noAuth ? 'put its password (requirepass) in the secrets dir, file redis-password (0600)' : 'check the Redis server')
          }
          const info = parseInfo(String(asText(await r.command(['INFO']))))
          // The TTL the hosts gave the blobs the cache check put (key fanal::blob::ID, as Trivy writes them).
          const ttl: RedisFacts['ttl'] = []
          if (cacheOn && ctx.token) {
            const { writers } = await putAll()
            for (const w of writers) {
              const s = Number(asText(await r.command(['TTL', `fanal::blob::${blobs.get(w)}`])))
              ttl.push({ host: w, seconds: s === -2 ? 'missing' : s })
            }
          }
          return redisVerdict(
            { ...(info.redis_version ? { version: info.redis_version } : {}), usedBytes: Number(info.used_memory ?? 0), maxBytes: Number(info.maxmemory ?? 0), ...(info.maxmemory_policy ? { policy: info.maxmemory_policy } : {}), ttl },
            { cacheTtl: inv.trivy.cacheTtl },
          )
        } finally {
          r.close()
        }
      },
    })
  }

  if (ctx.wanted('edge') && ctx.edge) {
    const edge = ctx.edge
    let read: Promise<EdgeServer[]> | undefined
    const servers = (): Promise<EdgeServer[]> => (read ??= edge.servers())
    const names = ctx.hosts.map((h) => h.name)
    const fix = `check the edge's runtime API: edge.host, edge.socket and edge.backend in the inventory (${edge.where})`
    specs.push({ check: 'edge', name: `edge backend ${edge.backend}`, host: 'edge', timeoutMs: ctx.timeoutMs * 2, fix, run: async () => edgeVerdicts(await servers(), names, edge.backend).backend })
    for (const h of names) {
      specs.push({ check: 'edge', name: `edge ${h}`, host: h, timeoutMs: ctx.timeoutMs * 2, fix, run: async () => edgeVerdicts(await servers(), names, edge.backend).hosts.get(h)! })
    }
  }

  const cleanup = async (): Promise<void> => {
    if (!puts) return
    const { writers } = await puts.catch(() => ({ writers: [] as string[] }))
    await Promise.all(
      writers.map((w) => twirp('trivy.cache.v1.Cache/DeleteBlobs', { blob_ids: [blobs.get(w)] }, tw(direct.find((d) => d.name === w)!.base)).catch(() => undefined)),
    )
  }
  return { specs, cleanup }
}

function asText(v: RespValue): string | number {
  if (isError(v)) throw new Error(`Redis: ${v.error}`)
  return typeof v === 'string' || typeof v === 'number' ? v : ''
}
