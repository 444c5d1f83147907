// `trivy db load` against the sandbox's real Trivy server over SSH/SFTP: a good db.tar.gz (+ javadb.tar.gz)
// is swapped in and proven; broken archives change nothing; an OCI layout from `db mirror --to-dir` loads;
// a start that fails after the swap puts the previous DB back with the service running.
import { execa } from 'execa'
import { cpSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parse } from 'yaml'
import { Agent } from 'undici'
import { afterEach, beforeAll, describe, expect, inject, it } from 'vitest'
import { loadAuth } from '../../src/db/auth.js'
import { mirror } from '../../src/db/mirror.js'
import { findTools } from '../../src/sandbox/prereqs.js'
import { hostExec } from '../../src/sandbox/host.js'
import { readState } from '../../src/sandbox/layout.js'
import { createHash } from 'node:crypto'
import { labctl, parseJson, ROOT } from '../helpers.js'

const sb = inject('sandbox')
const tmp = mkdtempSync(join(tmpdir(), 'labctl-dbload-'))
const CACHE = '/var/lib/trivy'
let versionUrl: string
let registry: string
let sandboxCa: string
const fixtures = ['alpine', 'vulnerability', 'data-source'].map((f) => join(ROOT, 'test/fixtures/db', `${f}.yaml`)).join(',')

const serverUpdatedAt = async (): Promise<string | undefined> => {
  const j = (await fetch(versionUrl, { signal: AbortSignal.timeout(5000) }).then((r) => r.json())) as { VulnerabilityDB?: { UpdatedAt: string } }
  return j.VulnerabilityDB?.UpdatedAt
}

/** A db.tar.gz built by labfixtures with the given UpdatedAt; `edit` may change the staged files first. */
async function archive(name: string, updatedAt: string, edit: (dir: string) => void = () => {}, files = ['trivy.db', 'metadata.json']): Promise<string> {
  const d = join(tmp, name)
  await execa(findTools().labfixtures, ['db', '--out', d, '--fixtures', fixtures, '--updated-at', updatedAt, '--next-update', new Date(Date.parse(updatedAt) + 12 * 3_600_000).toISOString().replace(/\.\d+Z$/, 'Z'), '--downloaded-at', updatedAt], { timeout: 60_000 })
  edit(d)
  const out = join(tmp, `${name}.tar.gz`)
  await execa('tar', ['-czf', out, '-C', d, ...files])
  return out
}

const hoursAgo = (h: number): string => new Date(Math.floor((Date.now() - h * 3_600_000) / 1000) * 1000).toISOString().replace(/\.\d+Z$/, 'Z')
// The scanner host's files live in its own mount namespace: read them through the sandbox console.
const onHost = (script: string): Promise<string> => hostExec(readState(sb.dir)!, ['sh', '-c', script])
const ls = async (): Promise<string[]> => (await onHost(`ls -A ${CACHE}`)).split('\n').filter(Boolean)
const leftovers = async (): Promise<string[]> => (await ls()).filter((f) => f.startsWith('.labctl-load-'))
const hostSha = async (path: string): Promise<string> => (await onHost(`sha256sum ${path} | cut -d' ' -f1`)).trim()
const exists = async (path: string): Promise<boolean> => (await onHost(`test -e ${path} && echo yes || echo no`)).trim() === 'yes'
const rmOnHost = (path: string): Promise<string> => onHost(`rm -rf -- ${path}`)
const sha = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex')

beforeAll(() => {
  const inv = parse(readFileSync(sb.inventory, 'utf8'))
  // The debug URL's name is in the lab's DNS, not the system resolver: its address directly.
  versionUrl = `http://${inv.trivy.hosts[0].address}:${new URL(inv.trivy.hosts[0].debugUrl).port}/version`
  sandboxCa = readFileSync(inv.trivy.caBundle, 'utf8')
  registry = String(inv.trivy.dbRepositories[0]).split('/')[0]!
})

afterEach(async () => {
  const r = await labctl(['sandbox', 'heal', '--all'], { timeoutMs: 60_000 })
  expect(r.exitCode, r.stderr).toBe(0)
})

describe('trivy db load', () => {
  it('broken archives are refused before anything is touched (exit 2, one line, server unchanged)', async () => {
    const before = await serverUpdatedAt()
    const cases: Array<[string, string, RegExp]> = [
      ['extra', await archive('extra', hoursAgo(1), (d) => writeFileSync(join(d, 'README'), 'x'), ['trivy.db', 'metadata.json', 'README']), /expected exactly metadata\.json and trivy\.db/],
      ['v1', await archive('v1', hoursAgo(1), (d) => writeFileSync(join(d, 'metadata.json'), JSON.stringify({ Version: 1, UpdatedAt: hoursAgo(1) }))), /Version 1; Trivy v0\.74 needs 2/],
      ['notbolt', await archive('notbolt', hoursAgo(1), (d) => writeFileSync(join(d, 'trivy.db'), Buffer.alloc(8192, 7))), /not a bbolt database/],
      ['nometa', await archive('nometa', hoursAgo(1), () => {}, ['trivy.db']), /expected exactly/],
    ]
    writeFileSync(join(tmp, 'garbage.tar.gz'), 'this is not gzip')
    cases.push(['garbage', join(tmp, 'garbage.tar.gz'), /not a valid tar\.gz|cannot be read/])
    for (const [what, file, re] of cases) {
      const r = await labctl(['trivy', 'db', 'load', '--lab', 'sandbox', '--file', file, '--yes'])
      expect(r.exitCode, `${what}: ${r.stderr}`).toBe(2)
      expect(r.stderr, what).toMatch(re)
      expect(r.stderr).toMatch(/next: /)
    }
    expect(await serverUpdatedAt()).toBe(before)
    expect(await leftovers()).toEqual([])
  })

  it('--dry-run checks and plans, changes nothing', async () => {
    const before = await serverUpdatedAt()
    const r = await labctl(['trivy', 'db', 'load', '--lab', 'sandbox', '--file', await archive('dry', hoursAgo(2)), '--dry-run', '--json'])
    expect(r.exitCode, r.stderr).toBe(0)
    const j = parseJson<{ dryRun: boolean; plan: Record<string, string[]> }>(r.stdout)
    expect(j.dryRun).toBe(true)
    expect(j.plan['trivy-0']!.join('\n')).toMatch(/stop trivy-server[\s\S]*swap \/var\/lib\/trivy\/db/)
    expect(await serverUpdatedAt()).toBe(before)
  })

  it('loads db.tar.gz + javadb.tar.gz: swapped in, previous kept, /version shows the new UpdatedAt, canary passes', async () => {
    const t = hoursAgo(3)
    const db = await archive('good', t)
    const java = await archive('java', hoursAgo(5), (d) => {
      cpSync(join(d, 'trivy.db'), join(d, 'trivy-java.db'))
      writeFileSync(join(d, 'metadata.json'), JSON.stringify({ Version: 1, NextUpdate: hoursAgo(-100), UpdatedAt: hoursAgo(5), DownloadedAt: hoursAgo(5) }))
    }, ['trivy-java.db', 'metadata.json'])
    const r = await labctl(['trivy', 'db', 'load', '--lab', 'sandbox', '--file', db, '--file', java, '--yes', '--json'], { timeoutMs: 120_000 })
    expect(r.exitCode, r.stdout + r.stderr).toBe(0)
    const j = parseJson<{ results: Array<{ loaded: Array<{ kind: string; previous?: string }>; steps: Array<{ step: string }> }> }>(r.stdout)
    expect(j.results[0]!.steps.map((s) => s.step)).toContain('canary scan')
    expect(Date.parse((await serverUpdatedAt())!)).toBe(Date.parse(t))
    expect(await hostSha(`${CACHE}/db/trivy.db`)).toBe(sha(join(tmp, 'good/trivy.db')))
    expect(await exists(`${CACHE}/java-db/trivy-java.db`)).toBe(true)
    expect(JSON.parse(await onHost(`cat ${CACHE}/java-db/metadata.json`)).Version).toBe(1)
    expect(await onHost(`stat -c %U ${CACHE}/db/trivy.db`)).toMatch(/^trivy\s*$/)
    const prev = j.results[0]!.loaded.find((l) => l.kind === 'db')!.previous!
    expect(await exists(`${prev}/trivy.db`)).toBe(true)
    expect(await leftovers()).toEqual([])
    await rmOnHost(prev)
    await rmOnHost(`${CACHE}/java-db ${CACHE}/java-db.prev-*`)
  })

  it('--from-dir: the OCI layout written by `db mirror --to-dir` loads, digest-checked', async () => {
    const layout = join(tmp, 'usb')
    mkdirSync(layout, { recursive: true })
    await mirror({
      artifacts: ['db'],
      sources: { db: `${registry}/aquasec/trivy-db:2`, 'java-db': 'x/y:1', checks: 'x/y:1' },
      from: { kind: 'registry' },
      to: { kind: 'dir', dir: layout },
      dryRun: false,
      timeoutMs: 10_000,
      auth: loadAuth({}),
      // the sandbox registry speaks HTTPS with the sandbox CA on the lab network
      sourceDispatcher: new Agent({ connect: { ca: sandboxCa } }),
    })
    const r = await labctl(['trivy', 'db', 'load', '--lab', 'sandbox', '--from-dir', layout, '--yes', '--json'], { timeoutMs: 120_000 })
    expect(r.exitCode, r.stdout + r.stderr).toBe(0)
    const j = parseJson<{ archives: Array<{ kind: string; metadata: { UpdatedAt: string } }>; results: Array<{ loaded: Array<{ previous?: string }> }> }>(r.stdout)
    expect(j.archives.map((a) => a.kind)).toEqual(['db'])
    expect(Date.parse((await serverUpdatedAt())!)).toBe(Date.parse(j.archives[0]!.metadata.UpdatedAt))
    for (const l of j.results[0]!.loaded) if (l.previous) await rmOnHost(l.previous)
  })

  it('a start that fails after the swap puts the previous DB back and the service runs', async () => {
    const before = await serverUpdatedAt()
    const beforeDb = await hostSha(`${CACHE}/db/trivy.db`)
    expect((await labctl(['sandbox', 'break', 'restart-fails'], { timeoutMs: 60_000 })).exitCode).toBe(0)
    const r = await labctl(['trivy', 'db', 'load', '--lab', 'sandbox', '--file', await archive('rollback', hoursAgo(4)), '--yes', '--wait', '20'], { timeoutMs: 120_000 })
    expect(r.exitCode, r.stdout + r.stderr).toBe(1)
    expect(r.stderr).toMatch(/the previous DB was put back and trivy-server started \(answering with it\)/)
    expect(await serverUpdatedAt()).toBe(before)
    expect(await hostSha(`${CACHE}/db/trivy.db`)).toBe(beforeDb)
    expect(await leftovers()).toEqual([])
    expect((await ls()).some((f) => f.startsWith('db.failed-'))).toBe(true)
    await rmOnHost(`${CACHE}/db.failed-*`)
  })
})
