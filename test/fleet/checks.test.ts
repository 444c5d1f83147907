// The fleet checks of `labctl trivy validate`: the verdicts on their own, then against real Trivy v0.74.0
// servers on loopback (separate fs caches; a shared real redis-server with a password, one host with
// --cache-ttl and one without) and a real HAProxy whose backend has a dead host.
import { spawn, type ChildProcess } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { execa } from 'execa'
import { until } from './fixtures.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { makeEdge, socketTransport } from '../../src/edge/index.js'
import type { EdgeServer } from '../../src/edge/runtime.js'
import { InventorySchema } from '../../src/inventory/schema.js'
import { findTools } from '../../src/sandbox/prereqs.js'
import { freePorts, portOpen } from '../../src/sandbox/proc.js'
import { cacheVerdict, edgeVerdicts, redisVerdict } from '../../src/trivy/fleet-checks.js'
import { runValidate } from '../../src/trivy/validate.js'
import { desiredEnv, maskEnv, mergeEnv } from '../../src/trivy/install-render.js'
import { parseResp, redisTarget } from '../../src/redis/client.js'

const srv = (name: string, status: string, admin: EdgeServer['admin'] = 'ready', up = status === 'UP'): EdgeServer => ({ name, address: '10.0.0.1', status, up, admin, operational: up ? 'running' : 'stopped', inFlight: 0 })

describe('the Redis cache in the inventory and the env file', () => {
  const inv = (cacheBackend: string, cacheTtl?: string) =>
    InventorySchema.safeParse({ name: 't', dns: { servers: ['10.0.0.53'] }, trivy: { version: '0.74.0', publicUrl: 'https://t.lab.test', cacheBackend, ...(cacheTtl ? { cacheTtl } : {}), hosts: [{ name: 'trivy-0', fqdn: 'trivy-0.lab.test' }] } })
  it('a redis URL without credentials; the password only in the env file, masked when shown', () => {
    expect(inv('redis://:pw@redis.lab.test:6379').error?.issues[0]?.message).toMatch(/password goes in the secrets dir/)
    expect(inv('redis://redis.lab.test:6379; rm -rf /').success).toBe(false)
    expect(inv('http://redis.lab.test:6379').success).toBe(false)
    expect(inv('redis://redis.lab.test:6379', '24d').success).toBe(false)
    const ok = inv('rediss://redis.lab.test:6380/2', '24h')
    expect(ok.success).toBe(true)
    const env = Object.fromEntries(desiredEnv(ok.data!, ok.data!.trivy.hosts[0]!, 'tok', { redisPassword: 'pw123' }))
    expect(env).toMatchObject({ TRIVY_CACHE_BACKEND: 'rediss://:pw123@redis.lab.test:6380/2', TRIVY_CACHE_TTL: '24h' })
    const text = mergeEnv(undefined, desiredEnv(ok.data!, ok.data!.trivy.hosts[0]!, 'tok', { redisPassword: 'pw123' }), '')
    expect(maskEnv(text)).not.toContain('pw123')
    expect(redisTarget('rediss://redis.lab.test:6380/2')).toEqual({ host: 'redis.lab.test', port: 6380, tls: true, db: 2 })
  })
  it('RESP answers: partial, nested, errors', () => {
    expect(parseResp(Buffer.from('$5\r\nhel'))).toBeUndefined()
    expect(parseResp(Buffer.from('*2\r\n$1\r\na\r\n:7\r\n'))!.value).toEqual(['a', 7])
    expect(parseResp(Buffer.from('-WRONGPASS invalid\r\n'))!.value).toEqual({ error: 'WRONGPASS invalid' })
    expect(() => parseResp(Buffer.from('HTTP/1.1 400\r\n'))).toThrow(/not a Redis answer/)
  })
})

describe('fleet verdicts', () => {
  it('cache: shared, separate fs caches, a host on another cache, a host that keeps nothing', () => {
    const w = ['trivy-0', 'trivy-1', 'trivy-2']
    expect(cacheVerdict({ reader: 'trivy-0', writers: w, missingFrom: [], backend: 'redis://r:6379', hostCount: 3 })).toMatchObject({ status: 'pass', detail: expect.stringContaining('trivy-1, trivy-2: the scan cache is shared') })
    const fs = cacheVerdict({ reader: 'trivy-0', writers: w, missingFrom: ['trivy-1', 'trivy-2'], backend: 'fs', hostCount: 3 })
    expect(fs).toMatchObject({ status: 'fail', detail: expect.stringMatching(/trivy-1, trivy-2: the 3 hosts behind one edge have separate fs caches.*layer cache missing/), fix: expect.stringContaining('trivy.cacheBackend: redis://') })
    expect(cacheVerdict({ reader: 'trivy-0', writers: w, missingFrom: ['trivy-2'], backend: 'redis://r:6379', hostCount: 3 })).toMatchObject({ status: 'fail', detail: expect.stringContaining('trivy-2, although the inventory says every host uses redis://r:6379') })
    expect(cacheVerdict({ reader: 'trivy-1', writers: w, missingFrom: ['trivy-1'], backend: 'redis://r:6379', hostCount: 3 }).status).toBe('fail')
  })

  it('redis: TTL, fullness, maxmemory', () => {
    const base = { version: '7.0.15', usedBytes: 10 << 20, maxBytes: 64 << 20, policy: 'noeviction' }
    expect(redisVerdict({ ...base, ttl: [{ host: 'trivy-0', seconds: 3600 }] }, { cacheTtl: '1h' })).toMatchObject({ status: 'pass', detail: expect.stringMatching(/10\.0 MiB of maxmemory 64\.0 MiB \(16%.*trivy-0 3600 s/) })
    expect(redisVerdict({ ...base, ttl: [{ host: 'trivy-0', seconds: 3600 }, { host: 'trivy-1', seconds: -1 }] }, {})).toMatchObject({ status: 'warn', detail: expect.stringContaining('trivy-1 writes cache entries without a TTL') })
    expect(redisVerdict({ ...base, usedBytes: 60 << 20, ttl: [{ host: 'trivy-1', seconds: -1 }] }, {}).status).toBe('fail')
    expect(redisVerdict({ ...base, usedBytes: 64 << 20, ttl: [] }, { cacheTtl: '1h' })).toMatchObject({ status: 'fail', detail: expect.stringContaining('OOM command not allowed') })
    expect(redisVerdict({ ...base, usedBytes: 64 << 20, policy: 'volatile-ttl', ttl: [] }, { cacheTtl: '1h' }).status).toBe('warn')
    expect(redisVerdict({ ...base, maxBytes: 0, ttl: [] }, { cacheTtl: '1h' })).toMatchObject({ status: 'warn', detail: expect.stringContaining('no maxmemory') })
  })

  it('edge: all UP, degraded naming the host, drained, nothing serving, a host missing from the backend', () => {
    const hosts = ['trivy-0', 'trivy-1', 'trivy-2']
    const ok = edgeVerdicts([srv('trivy-0', 'UP'), srv('trivy-1', 'UP'), srv('trivy-2', 'UP')], hosts, 'be')
    expect(ok.backend).toMatchObject({ status: 'pass', detail: '3/3 UP in be' })
    const deg = edgeVerdicts([srv('trivy-0', 'UP'), srv('trivy-1', 'DOWN'), srv('trivy-2', 'UP')], hosts, 'be')
    expect(deg.backend).toMatchObject({ status: 'warn', detail: '2/3 UP in be (down or out: trivy-1): degraded' })
    expect(deg.hosts.get('trivy-1')).toMatchObject({ status: 'fail', detail: expect.stringMatching(/^degraded: trivy-1 is DOWN at the edge.*still serves from trivy-0, trivy-2/) })
    expect(deg.hosts.get('trivy-0')!.status).toBe('pass')
    expect(edgeVerdicts([srv('trivy-0', 'DRAIN', 'drain', false), srv('trivy-1', 'UP'), srv('trivy-2', 'UP')], hosts, 'be').hosts.get('trivy-0')).toMatchObject({ status: 'warn', detail: expect.stringContaining('(drain)') })
    const none = edgeVerdicts([srv('trivy-0', 'DOWN'), srv('trivy-1', 'DOWN'), srv('trivy-2', 'DOWN')], hosts, 'be')
    expect(none.backend).toMatchObject({ status: 'fail', detail: expect.stringContaining('0/3 UP in be') })
    expect(none.hosts.get('trivy-0')!.detail).not.toMatch(/degraded/)
    expect(edgeVerdicts([srv('trivy-0', 'UP'), srv('trivy-1', 'UP')], hosts, 'be').hosts.get('trivy-2')).toMatchObject({ status: 'fail', detail: expect.stringContaining('not in the edge backend be') })
  })
})

// ---------------------------------------------------------------- real servers

const TOKEN = 'fleet-test-token-0123456789abcdef'
const REDIS_PW = 'fleet-redis-pw-0123456789'
let dir: string
const children: ChildProcess[] = []
let ports: { a: number; b: number; c: number; redis: number; fe: number; dead: number }


function daemon(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): void {
  const c = spawn(cmd, args, { env: { PATH: process.env.PATH, HOME: dir, ...env }, stdio: 'ignore' })
  children.push(c)
}

function trivy(name: string, port: number, env: NodeJS.ProcessEnv): void {
  const cache = join(dir, name)
  cpSync(join(dir, 'db-src'), join(cache, 'db'), { recursive: true })
  // Token and Redis password in the environment, as the env file gives them: never in argv.
  daemon(findTools().trivy, ['server', '--listen', `127.0.0.1:${port}`, '--cache-dir', cache, '--skip-db-update'], { TRIVY_TOKEN: TOKEN, ...env, TRIVY_DISABLE_TELEMETRY: 'true', TRIVY_SKIP_VERSION_CHECK: 'true' })
}

function inventory(o: { cacheBackend: string; hosts: Array<{ name: string; port: number }>; cacheTtl?: string; publicPort?: number }) {
  const inv = InventorySchema.parse({
    name: 'fleet-test',
    dns: { servers: ['127.0.0.1:1'], timeoutMs: 200 },
    trivy: {
      version: '0.74.0',
      publicUrl: `http://127.0.0.1:${o.publicPort ?? ports.fe}`,
      cacheBackend: o.cacheBackend,
      ...(o.cacheTtl ? { cacheTtl: o.cacheTtl } : {}),
      hosts: o.hosts.map((h) => ({ name: h.name, fqdn: `${h.name}.fleet.test`, listen: `127.0.0.1:${h.port}`, debugUrl: `http://127.0.0.1:${h.port}` })),
    },
    secrets: { dir: join(dir, 'secrets') },
  })
  return { inventory: inv, path: join(dir, 'inv.yaml'), dir }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'labctl-fleet-'))
  const [a, b, c, redis, fe, dead] = (await freePorts(6)) as [number, number, number, number, number, number]
  ports = { a, b, c, redis, fe, dead }
  mkdirSync(join(dir, 'secrets'), { mode: 0o700 })
  writeFileSync(join(dir, 'secrets', 'token'), `${TOKEN}\n`, { mode: 0o600 })
  writeFileSync(join(dir, 'secrets', 'redis-password'), `${REDIS_PW}\n`, { mode: 0o600 })
  const fixtures = join(import.meta.dirname, '..', 'fixtures', 'db')
  await execa(findTools().labfixtures, ['db', '--out', join(dir, 'db-src'), '--fixtures', readdirSync(fixtures).filter((f) => f.endsWith('.yaml')).map((f) => join(fixtures, f)).join(',')], { timeout: 60_000 })
  // A real redis-server with a password: its config file, not its argv, holds requirepass.
  writeFileSync(join(dir, 'redis.conf'), `bind 127.0.0.1\nport ${redis}\nrequirepass ${REDIS_PW}\nsave ""\nappendonly no\nmaxmemory 64mb\nmaxmemory-policy noeviction\ndir ${dir}\n`, { mode: 0o600 })
  daemon('redis-server', [join(dir, 'redis.conf')])
  await until('redis', () => portOpen(redis, '127.0.0.1'))
  const backend = `redis://:${REDIS_PW}@127.0.0.1:${redis}`
  trivy('a', a, {})
  trivy('b', b, { TRIVY_CACHE_BACKEND: backend, TRIVY_CACHE_TTL: '1h' })
  trivy('c', c, { TRIVY_CACHE_BACKEND: backend })
  // The edge: trivy-b alive, trivy-x on a port where nothing listens.
  writeFileSync(
    join(dir, 'haproxy.cfg'),
    `global\n  stats socket ${join(dir, 'admin.sock')} mode 600 level admin\ndefaults\n  mode http\n  timeout connect 1s\n  timeout client 10s\n  timeout server 10s\nfrontend fe\n  bind 127.0.0.1:${fe}\n  default_backend trivy-vm-be\nbackend trivy-vm-be\n  option httpchk GET /healthz\n  default-server inter 300ms fall 1 rise 1\n  server trivy-b 127.0.0.1:${b} check\n  server trivy-x 127.0.0.1:${dead} check\n`,
  )
  daemon('/usr/sbin/haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')])
  for (const p of [a, b, c]) await until(`trivy on ${p}`, () => portOpen(p, '127.0.0.1'), 60_000)
}, 120_000)

afterAll(async () => {
  for (const c of children) c.kill('SIGTERM')
  await sleep(300)
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL')
  rmSync(dir, { recursive: true, force: true })
})

describe('fleet checks against real Trivy servers, Redis and HAProxy', () => {
  it('hosts with separate caches behind one edge fail the cache check, with the reason and the fix', async () => {
    const loaded = inventory({ cacheBackend: 'fs', hosts: [{ name: 'trivy-a', port: ports.a }, { name: 'trivy-b', port: ports.b }] })
    const r = await runValidate({ loaded, hosts: loaded.inventory.trivy.hosts, only: ['cache'] })
    expect(r.checks.map((c) => [c.name, c.status])).toEqual([['cache trivy-a', 'fail'], ['cache trivy-b', 'fail']])
    expect(r.checks[0]!.detail).toMatch(/does not see the blobs put through trivy-b: the 2 hosts behind one edge have separate fs caches/)
    expect(r.checks[0]!.fix).toMatch(/redis:\/\//)
    expect(r.ok).toBe(false)
  })

  it('two hosts on one Redis see each other\'s blobs; the Redis check reads memory and names the host without a TTL', async () => {
    const loaded = inventory({ cacheBackend: `redis://127.0.0.1:${ports.redis}`, hosts: [{ name: 'trivy-b', port: ports.b }, { name: 'trivy-c', port: ports.c }] })
    const r = await runValidate({ loaded, hosts: loaded.inventory.trivy.hosts, only: ['cache', 'redis'] })
    const by = Object.fromEntries(r.checks.map((c) => [c.name, c]))
    expect(by['cache trivy-b']).toMatchObject({ status: 'pass', detail: expect.stringContaining('sees the blobs put through trivy-c') })
    expect(by['cache trivy-c']).toMatchObject({ status: 'pass', detail: expect.stringContaining('sees the blobs put through trivy-b') })
    const redis = by[`redis 127.0.0.1:${ports.redis}`]!
    expect(redis).toMatchObject({ status: 'warn', detail: expect.stringMatching(/Redis 7\.\d+\.\d+: [\d.]+ MiB of maxmemory 64\.0 MiB .*trivy-b 3\d{3} s, trivy-c none: trivy-c writes cache entries without a TTL/) })
    expect(JSON.stringify(r)).not.toContain(REDIS_PW)
    expect(JSON.stringify(r)).not.toContain(TOKEN)
  })

  it('a host on its own cache among Redis hosts: the broken pairs are named', async () => {
    const loaded = inventory({ cacheBackend: `redis://127.0.0.1:${ports.redis}`, hosts: [{ name: 'trivy-a', port: ports.a }, { name: 'trivy-b', port: ports.b }, { name: 'trivy-c', port: ports.c }] })
    const r = await runValidate({ loaded, hosts: loaded.inventory.trivy.hosts, only: ['cache'] })
    const by = Object.fromEntries(r.checks.map((c) => [c.host, c]))
    expect(by['trivy-a']).toMatchObject({ status: 'fail', detail: expect.stringContaining('trivy-b, trivy-c, although the inventory says every host uses redis://127.0.0.1') })
    expect(by['trivy-b']).toMatchObject({ status: 'fail', detail: expect.stringMatching(/put through trivy-a,/) })
  })

  it('wrong Redis password, Redis down: one-line failures, the password never shown', async () => {
    writeFileSync(join(dir, 'secrets', 'redis-password'), 'not-the-password\n', { mode: 0o600 })
    try {
      const loaded = inventory({ cacheBackend: `redis://127.0.0.1:${ports.redis}`, hosts: [{ name: 'trivy-b', port: ports.b }] })
      const r = await runValidate({ loaded, hosts: loaded.inventory.trivy.hosts, only: ['redis'] })
      expect(r.checks[0]).toMatchObject({ status: 'fail', detail: expect.stringMatching(/rejected the credentials: WRONGPASS/) })
      expect(JSON.stringify(r)).not.toContain('not-the-password')
    } finally {
      writeFileSync(join(dir, 'secrets', 'redis-password'), `${REDIS_PW}\n`, { mode: 0o600 })
    }
    const down = inventory({ cacheBackend: `redis://127.0.0.1:${ports.dead}`, hosts: [{ name: 'trivy-b', port: ports.b }] })
    const r2 = await runValidate({ loaded: down, hosts: down.inventory.trivy.hosts, only: ['redis'] })
    expect(r2.checks[0]).toMatchObject({ status: 'fail', detail: `Redis at 127.0.0.1:${ports.dead} refused the connection` })
  })

  it('one host down behind a serving edge: degraded, exit-3 failures naming that host only', async () => {
    const loaded = inventory({ cacheBackend: `redis://127.0.0.1:${ports.redis}`, hosts: [{ name: 'trivy-b', port: ports.b }, { name: 'trivy-x', port: ports.dead }] })
    const edge = makeEdge({ transport: socketTransport(join(dir, 'admin.sock')), backend: 'trivy-vm-be', where: 'test edge' })
    await until('the edge checks', async () => (await edge.servers()).map((s) => s.status).join() === 'UP,DOWN', 10_000)
    const r = await runValidate({ loaded, hosts: loaded.inventory.trivy.hosts, only: ['healthz', 'edge'], edge })
    const by = Object.fromEntries(r.checks.map((c) => [c.name, c]))
    expect(by['healthz via HAProxy']!.status).toBe('pass')
    expect(by['edge backend trivy-vm-be']).toMatchObject({ status: 'warn', detail: '1/2 UP in trivy-vm-be (down or out: trivy-x): degraded' })
    expect(by['edge trivy-x']).toMatchObject({ status: 'fail', detail: expect.stringMatching(/^degraded: trivy-x is DOWN at the edge.*still serves from trivy-b/) })
    expect(by['edge trivy-b']!.status).toBe('pass')
    expect(r).toMatchObject({ ok: false, degraded: true, degradedHosts: ['trivy-x'] })
  })
})
