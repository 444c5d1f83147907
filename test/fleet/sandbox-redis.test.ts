// `labctl sandbox up --cache redis`, its own lab next to the suite's (own XDG dirs, own /24): the real
// redis-server on the redis node, trivy-0 installed by labctl with the shared cache, validate's cache and
// redis checks on it, the Redis password nowhere but its 0600 files; Redis down → exit 3 naming it.
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { labctl, parseJson } from '../helpers.js'

let root: string
let env: NodeJS.ProcessEnv
let upOut: string
const dir = () => join(root, 'state', 'labctl', 'sandbox')
const password = () => readFileSync(join(dir(), 'secrets', 'trivy-vm', 'redis-password'), 'utf8').trim()

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'labctl-fleet-redis-'))
  env = { XDG_CONFIG_HOME: join(root, 'config'), XDG_STATE_HOME: join(root, 'state'), LABCTL_SANDBOX_DIR: dir() }
  const up = await labctl(['sandbox', 'up', '--cache', 'redis'], { env, timeoutMs: 300_000 })
  upOut = `${up.stdout}\n${up.stderr}`
  expect(up.exitCode, upOut).toBe(0)
}, 320_000)

afterAll(async () => {
  const down = await labctl(['sandbox', 'down', '--json'], { env, timeoutMs: 120_000 })
  expect(parseJson<{ leftover: string[] }>(String(down.stdout)).leftover).toEqual([])
  rmSync(root, { recursive: true, force: true })
}, 130_000)

describe('sandbox up --cache redis', () => {
  it('a Redis on its own node; the inventory names it without credentials; the password is a 0600 secret', () => {
    const inv = readFileSync(join(root, 'config', 'labctl', 'labs', 'sandbox.yaml'), 'utf8')
    const m = /cacheBackend: redis:\/\/(198\.1[89]\.\d+)\.6:6379/.exec(inv)
    expect(m, inv).not.toBeNull()
    expect(inv).toContain('cacheTtl: 1h')
    expect(upOut).toMatch(/redis up: the shared scan cache on 198\.1[89]\.\d+\.6:6379/)
    expect(statSync(join(dir(), 'secrets', 'trivy-vm', 'redis-password')).mode & 0o777).toBe(0o600)
    expect(statSync(join(dir(), 'redis.conf')).mode & 0o777).toBe(0o600)
    expect(password()).toMatch(/^[0-9a-f]{48}$/)
    expect(inv).not.toContain(password())
    expect(upOut).not.toContain(password())
  })

  it('validate: trivy-0 writes to the Redis with a TTL; the password appears in no output and no argv', async () => {
    const r = await labctl(['--lab', 'sandbox', 'trivy', 'validate', '--only', 'cache,redis', '--json'], { env, timeoutMs: 120_000 })
    const out = String(r.stdout)
    expect(r.exitCode, out).toBe(0)
    const checks = parseJson<{ data?: { checks: Array<{ name: string; status: string; detail: string }> }; checks?: Array<{ name: string; status: string; detail: string }> }>(out)
    const list = checks.data?.checks ?? checks.checks ?? []
    expect(list.map((c) => [c.name.replace(/\d+\.\d+\.\d+\.\d+/, 'ADDR'), c.status])).toEqual([['cache trivy-0', 'pass'], ['redis ADDR:6379', 'pass']])
    expect(list[1]!.detail).toMatch(/Redis 7\.\d+\.\d+: [\d.]+ MiB of maxmemory 64\.0 MiB .*policy volatile-ttl\); TTL of fresh blobs: trivy-0 3[56]\d\d s/)
    expect(out).not.toContain(password())
    const ps = await execa('ps', ['-eo', 'args'])
    expect(String(ps.stdout)).not.toContain(password())
    // On trivy-0 the password is only in the 0600 env file, inside TRIVY_CACHE_BACKEND.
    const envFile = await labctl(['sandbox', 'exec', 'trivy-0', '--', 'sh', '-c', 'stat -c "%a %U" /etc/trivy/trivy-server.env; grep -c "^TRIVY_CACHE_BACKEND=redis://:" /etc/trivy/trivy-server.env'], { env })
    expect(String(envFile.stdout).trim().split('\n')).toEqual(['600 root', '1'])
  })

  it('Redis down: the redis check fails (exit 3) naming the Redis', async () => {
    const state = JSON.parse(readFileSync(join(dir(), 'state.json'), 'utf8')) as { redis: { pid: number } }
    process.kill(state.redis.pid, 'SIGSTOP')
    try {
      const r = await labctl(['--lab', 'sandbox', 'trivy', 'validate', '--only', 'redis', '--timeout', '1000'], { env, timeoutMs: 60_000 })
      expect(r.exitCode, String(r.stdout)).toBe(3)
      expect(String(r.stdout)).toMatch(/FAIL\s+redis 198\.1[89]\.\d+\.6:6379\s+Redis at 198\.1[89]\.\d+\.6:6379 did not answer AUTH within 1000 ms/)
    } finally {
      process.kill(state.redis.pid, 'SIGCONT')
    }
  })
})
