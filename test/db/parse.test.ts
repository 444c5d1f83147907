// Pure pieces of the db commands: references, schemes, auth files and challenges, the server's pull settings.
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadAuth, parseChallenge } from '../../src/db/auth.js'
import { mirrorRef, parseRef, registryScheme } from '../../src/db/ref.js'
import { mirrorSources, parseOnly } from '../../src/db/settings.js'
import { pullSettings } from '../../src/db/status.js'

describe('db references and settings', () => {
  it('parses registry references and refuses the ambiguous ones', () => {
    expect(parseRef('ghcr.io/aquasecurity/trivy-db:2')).toEqual({ registry: 'ghcr.io', repository: 'aquasecurity/trivy-db', reference: '2' })
    expect(parseRef('127.0.0.1:5000/a/b')).toEqual({ registry: '127.0.0.1:5000', repository: 'a/b', reference: 'latest' })
    expect(parseRef(`[::1]:5000/x@sha256:${'a'.repeat(64)}`).reference).toBe(`sha256:${'a'.repeat(64)}`)
    for (const bad of ['trivy-db', 'aquasecurity/trivy-db:2', 'ghcr.io/UPPER:1', 'ghcr.io/x:bad tag', 'ghcr.io/x@sha256:123', 'ghcr.io/']) expect(() => parseRef(bad), bad).toThrow(/REGISTRY\[:PORT\]|first part|not a valid|digest|no registry/)
    expect(mirrorRef({ registry: 'r:5000', namespace: 'aquasec' }, 'checks')).toEqual({ registry: 'r:5000', repository: 'aquasec/trivy-checks', reference: '1' })
  })

  it('plain HTTP only for loopback and private addresses (or when told)', () => {
    expect(['127.0.0.1:5000', 'localhost:5000', '10.1.2.3', '192.168.1.1:443', '172.20.0.1', '[::1]:5000'].map((r) => registryScheme(r))).toEqual(Array(6).fill('http'))
    expect(['ghcr.io', '172.32.0.1', '8.8.8.8:5000', 'registry.lab.test:5000'].map((r) => registryScheme(r))).toEqual(Array(4).fill('https'))
    expect(registryScheme('registry.lab.test', true)).toBe('http')
  })

  it('sources: flag, then inventory, then the public registry; --only validated', () => {
    const m = { registry: 'r', namespace: 'n', insecure: false, timeoutMs: 1000, sources: { javaDb: 'mirror.example/j:1' } }
    expect(mirrorSources(m, { checks: 'x.example/c:1' })).toEqual({ db: 'ghcr.io/aquasecurity/trivy-db:2', 'java-db': 'mirror.example/j:1', checks: 'x.example/c:1' })
    expect(parseOnly(undefined)).toEqual(['db', 'java-db', 'checks'])
    expect(parseOnly('checks,db,checks')).toEqual(['checks', 'db'])
    expect(() => parseOnly('vex')).toThrow(/unknown artifact/)
  })

  it('auth files: REGISTRY_AUTH_FILE first, auth or username/password, https:// keys; identity tokens refused', () => {
    const dir = mkdtempSync(join(tmpdir(), 'labctl-auth-'))
    const f = join(dir, 'auth.json')
    writeFileSync(f, JSON.stringify({ auths: { 'https://reg.example:5000': { auth: Buffer.from('u:p:with:colons').toString('base64') }, 'plain.example': { username: 'a', password: 'b' }, 'tok.example': { identitytoken: 'x' } } }))
    const a = loadAuth({ REGISTRY_AUTH_FILE: f, HOME: dir })
    expect(a.file).toBe(f)
    expect(a.lookup('reg.example:5000')).toEqual({ username: 'u', password: 'p:with:colons' })
    expect(a.lookup('plain.example')).toEqual({ username: 'a', password: 'b' })
    expect(a.lookup('other.example')).toBeUndefined()
    expect(() => a.lookup('tok.example')).toThrow(/identity token/)
    // docker's config.json when REGISTRY_AUTH_FILE is unset
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ auths: { 'd.example': { auth: Buffer.from('x:y').toString('base64') } } }))
    expect(loadAuth({ DOCKER_CONFIG: dir }).lookup('d.example')).toEqual({ username: 'x', password: 'y' })
    expect(loadAuth({ HOME: join(dir, 'nohome') }).file).toBeUndefined()
    writeFileSync(join(dir, 'broken.json'), '{')
    expect(() => loadAuth({ REGISTRY_AUTH_FILE: join(dir, 'broken.json') })).toThrow(/not valid JSON/)
  })

  it('parses WWW-Authenticate challenges', () => {
    expect(parseChallenge('Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:a/b:pull"')).toEqual({
      scheme: 'bearer',
      params: { realm: 'https://ghcr.io/token', service: 'ghcr.io', scope: 'repository:a/b:pull' },
    })
    expect(parseChallenge('Basic realm="Registry"')?.scheme).toBe('basic')
  })

  it("the server's pull settings: env file, then ExecStart flags (flags win)", () => {
    expect(pullSettings('TRIVY_DB_REPOSITORY="r1/a:2,r2/b:2"\nTRIVY_SKIP_DB_UPDATE=false\n', '')).toEqual({ repositories: ['r1/a:2', 'r2/b:2'], skipDbUpdate: false })
    expect(pullSettings('TRIVY_SKIP_DB_UPDATE=true\n', 'ExecStart=/usr/bin/trivy server --listen 0.0.0.0:4954 --db-repository m/aquasec/trivy-db:2\n')).toEqual({ repositories: ['m/aquasec/trivy-db:2'], skipDbUpdate: true })
    expect(pullSettings('', 'ExecStart=/usr/bin/trivy server --db-repository=a/b:2,c/d:2 --skip-db-update')).toEqual({ repositories: ['a/b:2', 'c/d:2'], skipDbUpdate: true })
  })
})
