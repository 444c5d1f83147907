// `labctl trivy db load`: populate a scanner host's cache by hand (the seed's "manual cache population"):
// db.tar.gz → CACHE/db/{trivy.db,metadata.json}, javadb.tar.gz → CACHE/java-db/{trivy-java.db,metadata.json}.
// The archive is checked here first (exactly the expected files, metadata Version, a real bbolt file), sent
// over SFTP next to the cache, its sha256 checked and unpacked on the host, then — with the service
// stopped — swapped in by rename, the previous DB kept aside; the service is started and the result
// proved (/version shows the archive's UpdatedAt, a canary scan finds CVEs). On any failure after the
// swap the previous DB is put back and the service started again.
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs'
import { z } from 'zod'
import { LabctlError, UsageError, errorMessage, oneLine } from '../errors.js'
import { readBounded } from '../fs/read-bounded.js'
import { inventoryPath, type LoadedInventory } from '../inventory/load.js'
import type { ScannerHost } from '../inventory/schema.js'
import { labAgent } from '../net/http.js'
import { canaryProblem, canaryScan, getVersion } from '../trivy/api.js'
import { sections } from '../trivy/remote.js'
import { loadToken } from '../trivy/token.js'
import type { DbRemote } from './host.js'
import { blobPath, findInIndex } from './layout.js'
import { ARTIFACTS, type ArtifactKey } from './ref.js'
import { fileDigest } from './registry.js'
import { tarGzEntries } from './tar.js'

const BOLT_MAGIC = 'edda0ced'
const KINDS = {
  db: { dbFile: 'trivy.db', subdir: 'db', version: 2, archive: 'db.tar.gz' },
  'java-db': { dbFile: 'trivy-java.db', subdir: 'java-db', version: 1, archive: 'javadb.tar.gz' },
} as const
export type LoadKind = keyof typeof KINDS

const MetaSchema = z.object({ Version: z.number(), UpdatedAt: z.string(), NextUpdate: z.string().optional(), DownloadedAt: z.string().optional() })

export type CheckedArchive = { kind: LoadKind; file: string; sha256: string; size: number; metadata: z.infer<typeof MetaSchema>; dbBytes: number; origin: string }

/** Checks a DB archive without unpacking it: exactly DBFILE + metadata.json, metadata Version, bbolt magic. */
export async function checkArchive(file: string, origin = file): Promise<CheckedArchive> {
  const bad = (why: string): UsageError => new UsageError(`${origin}: ${why}`, { code: 'BAD_ARCHIVE', suggestion: 'use db.tar.gz / javadb.tar.gz exactly as published (oras pull, or `labctl trivy db mirror --to-dir`); nothing was changed' })
  if (!existsSync(file) || !statSync(file).isFile()) throw new UsageError(`${origin}: no such file`, { suggestion: 'check the path' })
  const names: string[] = []
  let meta: unknown
  let head: Buffer | undefined
  let dbName: string | undefined
  let dbBytes = 0
  try {
    for await (const e of tarGzEntries(createReadStream(file), { keepBytes: 64 * 1024, maxEntries: 16, what: origin })) {
      const name = e.name.replace(/^\.\//, '')
      if (e.type === 'dir' && (name === '' || name === '.' || name === './')) continue
      if (e.type !== 'file') throw bad(`"${name}" is not a regular file (links and directories are refused)`)
      names.push(name)
      if (name === 'metadata.json') {
        try {
          meta = JSON.parse((e.data ?? Buffer.alloc(0)).toString('utf8'))
        } catch {
          throw bad('metadata.json is not JSON')
        }
      } else if (name === 'trivy.db' || name === 'trivy-java.db') {
        dbName = name
        head = e.head
        dbBytes = e.size
      }
    }
  } catch (err) {
    if (err instanceof UsageError) throw err
    if (err instanceof LabctlError) throw bad(err.message.replace(`${origin} `, ''))
    throw bad(`cannot be read as tar.gz (${oneLine(errorMessage(err), 120)})`)
  }
  const kind: LoadKind | undefined = dbName === 'trivy.db' ? 'db' : dbName === 'trivy-java.db' ? 'java-db' : undefined
  if (!kind) throw bad(`holds ${names.length ? names.join(', ') : 'nothing'}: expected trivy.db (or trivy-java.db) and metadata.json`)
  const k = KINDS[kind]
  const expected = [k.dbFile, 'metadata.json'].sort()
  if (names.slice().sort().join('\n') !== expected.join('\n')) throw bad(`holds ${names.join(', ')}: expected exactly ${expected.join(' and ')}`)
  const m = MetaSchema.safeParse(meta)
  if (!m.success) throw bad('metadata.json lacks Version / UpdatedAt')
  if (m.data.Version !== k.version) throw bad(`metadata.json says Version ${m.data.Version}; Trivy v0.74 needs ${k.version}`)
  if (!Number.isFinite(Date.parse(m.data.UpdatedAt)) || m.data.UpdatedAt.startsWith('0001-')) throw bad('metadata.json has no UpdatedAt: an incomplete download')
  if (!head || head.length < 20 || head.subarray(16, 20).toString('hex') !== BOLT_MAGIC) throw bad(`${k.dbFile} is not a bbolt database (bad magic): corrupted`)
  const d = await fileDigest(file)
  return { kind, file, sha256: d.digest, size: d.size, metadata: m.data, dbBytes, origin }
}

/** The DB archives inside an OCI layout written by `trivy db mirror --to-dir` (digest-verified). */
export async function archivesFromLayout(dir: string, kinds: LoadKind[] = ['db', 'java-db']): Promise<Array<{ file: string; origin: string }>> {
  const out: Array<{ file: string; origin: string }> = []
  for (const key of kinds as ArtifactKey[]) {
    const a = ARTIFACTS[key]
    const d = findInIndex(dir, `${a.name}:${a.tag}`)
    if (!d) continue
    const mfile = blobPath(dir, d.digest)
    if (!existsSync(mfile)) throw new LabctlError(`${dir}: manifest ${d.digest} is missing`, { code: 'LAYOUT_INCOMPLETE', suggestion: 'copy the whole directory again' })
    const mbytes = readBounded(mfile, 'oci-manifest')
    const mdig = await fileDigest(mfile)
    if (mdig.digest !== d.digest) throw new UsageError(`${dir}: manifest of ${a.name} does not match its digest (tampered or damaged)`, { code: 'DIGEST_MISMATCH', suggestion: 'write the layout again' })
    const layer = (JSON.parse(mbytes.toString('utf8')) as { layers?: Array<{ mediaType: string; digest: string; size: number }> }).layers?.find((l) => l.mediaType === a.layerType)
    if (!layer) throw new UsageError(`${dir}: ${a.name} has no ${a.layerType} layer`, { suggestion: 'mirror it again with `labctl trivy db mirror --to-dir`' })
    const lfile = blobPath(dir, layer.digest)
    const ldig = existsSync(lfile) ? await fileDigest(lfile) : undefined
    if (!ldig || ldig.digest !== layer.digest || ldig.size !== layer.size) throw new UsageError(`${dir}: the ${a.title} blob ${layer.digest} is ${ldig ? 'damaged (digest mismatch)' : 'missing'}`, { code: 'DIGEST_MISMATCH', suggestion: 'copy the layout again' })
    out.push({ file: lfile, origin: `${dir}:${a.name}:${a.tag} (${a.title})` })
  }
  if (!out.length) throw new UsageError(`${dir} holds no trivy-db:2 or trivy-java-db:1`, { suggestion: 'write it with `labctl trivy db mirror --to-dir DIR --only db,java-db`' })
  return out
}

export function loadPlan(loaded: LoadedInventory, host: ScannerHost, archives: CheckedArchive[]): string[] {
  const t = loaded.inventory.trivy
  return [
    ...archives.map((a) => `send ${a.origin} (${a.size} bytes, ${a.sha256.slice(0, 19)}, UpdatedAt ${a.metadata.UpdatedAt}) to ${host.name}:${t.cacheDir}/.labctl-load-* over SFTP; check its sha256 and unpack it there`),
    `stop ${t.serviceName}`,
    ...archives.map((a) => `swap ${t.cacheDir}/${KINDS[a.kind].subdir} for the new one by rename (the previous kept as ${t.cacheDir}/${KINDS[a.kind].subdir}.prev-<time>)`),
    `start ${t.serviceName}; prove it: /version shows the new UpdatedAt and a canary scan finds CVEs — else put the previous DB back and start again`,
  ]
}

export type LoadStep = { step: string; detail: string; durationMs: number }
export type LoadResult = { host: string; steps: LoadStep[]; loaded: Array<{ kind: LoadKind; updatedAt: string; previous?: string }>; downtimeMs: number }

const PREPARE = `
set -e
stage=$1; sum=$2; owner=$3
cd "$stage"
echo "$sum  archive.tar.gz" | sha256sum -c --status - || { echo "@@bad"; echo "sha256 mismatch after the transfer"; exit 0; }
mkdir new
tar -xzf archive.tar.gz -C new --no-same-owner --no-same-permissions
rm -f archive.tar.gz
chmod 0755 new; chmod 0644 new/*
chown -R "$owner" new
echo "@@files"; ls -A new
echo "@@magic"; for f in new/*.db; do head -c 20 "$f" | od -An -tx1 | tr -d ' \\n' | tail -c 8; echo; done
`

const SWAP = `
set -e
cache=$1; stage=$2; sub=$3; prev=$4
if [ -d "$cache/$sub" ]; then mv "$cache/$sub" "$prev"; echo "@@prev"; echo "$prev"; fi
mv "$stage/new" "$cache/$sub"
`

const ROLLBACK = `
cache=$1; sub=$2; prev=$3; failed=$4
if [ -d "$cache/$sub" ]; then mv "$cache/$sub" "$failed"; fi
if [ -n "$prev" ] && [ -d "$prev" ]; then mv "$prev" "$cache/$sub"; fi
`

export async function loadDb(
  loaded: LoadedInventory,
  host: ScannerHost,
  archives: CheckedArchive[],
  o: { waitMs: number; tokenFile?: string | undefined; remote: DbRemote; signal?: AbortSignal },
  progress: (m: string) => void = () => {},
): Promise<LoadResult> {
  const inv = loaded.inventory
  const t = inv.trivy
  const remote = o.remote
  const token = loadToken({ tokenFile: o.tokenFile, secretsDir: inventoryPath(loaded, inv.secrets.dir) }).token
  const steps: LoadStep[] = []
  const step = async <T>(name: string, fn: () => Promise<T>, detail: (r: T) => string): Promise<T> => {
    if (o.signal?.aborted) throw o.signal.reason
    progress(`${host.name}: ${name}`)
    const started = performance.now()
    const r = await fn()
    steps.push({ step: name, detail: detail(r), durationMs: Math.round(performance.now() - started) })
    return r
  }
  const sh = (script: string, args: string[], timeoutMs = 120_000) => remote.run(host, ['sh', '-c', script, 'labctl-db-load', ...args], { sudo: true, timeoutMs, check: true })
  const stamp = new Date().toISOString().replace(/[:.]/g, '-')
  const staged: Array<{ a: CheckedArchive; stage: string }> = []
  try {
    // 1. Send and unpack each archive next to the cache (same filesystem: the swap is a rename).
    for (const [i, a] of archives.entries()) {
      const stage = `${t.cacheDir}/.labctl-load-${stamp}-${i}`
      staged.push({ a, stage })
      await step(
        `send ${KINDS[a.kind].archive}`,
        async () => {
          await remote.run(host, ['mkdir', '-p', '-m', '0700', stage], { sudo: true, timeoutMs: 30_000, check: true })
          await remote.writeFile(host, `${stage}/archive.tar.gz`, readFileSync(a.file), { mode: 0o600, sudo: true, keepPrevious: false, timeoutMs: 600_000 })
          const r = await sh(PREPARE, [stage, a.sha256.slice(7), `${t.serviceUser}:`], 600_000)
          const s = sections(r.stdout)
          if (s.bad !== undefined) throw new LabctlError(`${host.name}: ${oneLine(s.bad)}: the archive was damaged on the way`, { code: 'TRANSFER', suggestion: 'rerun; nothing was changed' })
          const files = (s.files ?? '').trim().split('\n').filter(Boolean).sort()
          const want = [KINDS[a.kind].dbFile, 'metadata.json'].sort()
          if (files.join(',') !== want.join(',')) throw new LabctlError(`${host.name}: unpacked ${files.join(', ')}, expected ${want.join(', ')}`, { code: 'TRANSFER', suggestion: 'rerun; nothing was changed' })
          if ((s.magic ?? '').trim() !== BOLT_MAGIC) throw new LabctlError(`${host.name}: the unpacked ${KINDS[a.kind].dbFile} is not a bbolt file`, { code: 'TRANSFER', suggestion: 'rerun; nothing was changed' })
        },
        () => `${a.size} bytes, sha256 checked on ${host.name}, unpacked`,
      )
    }
  } catch (err) {
    await Promise.allSettled(staged.map((s) => remote.run(host, ['rm', '-rf', '--', s.stage], { sudo: true, timeoutMs: 30_000 })))
    throw err
  }

  // 2. Stop, swap, start; from here on, a failure puts the previous DB back.
  const swapped: Array<{ kind: LoadKind; sub: string; prev?: string; updatedAt: string }> = []
  const stopAt = Date.now()
  const base = host.debugUrl ? new URL(host.debugUrl).origin : t.publicUrl
  const caFile = t.caBundle ? inventoryPath(loaded, t.caBundle) : undefined
  const agent = labAgent({ dnsServers: inv.dns.servers, dnsTimeoutMs: inv.dns.timeoutMs, caFile })
  try {
    await step('stop service', () => remote.run(host, ['systemctl', 'stop', t.serviceName], { sudo: true, timeoutMs: 60_000, check: true }), () => `${t.serviceName} stopped`)
    for (const { a, stage } of staged) {
      const sub = KINDS[a.kind].subdir
      const prevPath = `${t.cacheDir}/${sub}.prev-${stamp}`
      const r = await step(`swap ${sub}`, () => sh(SWAP, [t.cacheDir, stage, sub, prevPath], 60_000), (x) => (sections(x.stdout).prev ? `previous kept as ${prevPath}` : 'no previous DB'))
      swapped.push({ kind: a.kind, sub, ...(sections(r.stdout).prev ? { prev: prevPath } : {}), updatedAt: a.metadata.UpdatedAt })
    }
    await step('start service', () => remote.run(host, ['systemctl', 'start', t.serviceName], { sudo: true, timeoutMs: 60_000, check: true }), () => `${t.serviceName} started`)
    const want = swapped.find((s) => s.kind === 'db')?.updatedAt
    await step(
      'wait for the new DB',
      async () => {
        const deadline = Date.now() + o.waitMs
        let last = 'no answer yet'
        for (;;) {
          if (o.signal?.aborted) throw o.signal.reason
          try {
            const v = await getVersion(base, { dispatcher: agent, timeoutMs: 3000 })
            if (v.VulnerabilityDB && (!want || Date.parse(v.VulnerabilityDB.UpdatedAt) === Date.parse(want))) return v.VulnerabilityDB.UpdatedAt
            last = v.VulnerabilityDB ? `it shows UpdatedAt ${v.VulnerabilityDB.UpdatedAt}, not ${want}` : 'no DB in /version'
          } catch (err) {
            last = oneLine(errorMessage(err), 120)
          }
          if (Date.now() > deadline) throw new LabctlError(`${host.name} did not come back with the loaded DB within ${o.waitMs / 1000} s (${last})`, { code: 'LOAD_UNPROVEN' })
          await new Promise((r) => setTimeout(r, 250))
        }
      },
      (u) => `/version: UpdatedAt ${u}`,
    )
    await step(
      'canary scan',
      async () => {
        const out = await canaryScan({ baseUrl: base, token, tokenHeader: t.tokenHeader, dispatcher: agent, timeoutMs: 30_000 })
        const problem = canaryProblem(out)
        if (problem || out.kind !== 'ok') {
          throw new LabctlError(`the canary scan failed on the loaded DB: ${problem}`, { code: 'LOAD_UNPROVEN' })
        }
        return out.vulnerabilities.length
      },
      (n) => `${n} vulnerabilities for the canary`,
    )
    return { host: host.name, steps, loaded: swapped.map((s) => ({ kind: s.kind, updatedAt: s.updatedAt, ...(s.prev ? { previous: s.prev } : {}) })), downtimeMs: Date.now() - stopAt }
  } catch (err) {
    if (swapped.length || steps.some((s) => s.step === 'stop service')) {
      progress(`${host.name}: failed (${oneLine(errorMessage(err), 160)}): putting the previous DB back`)
      await remote.run(host, ['systemctl', 'stop', t.serviceName], { sudo: true, timeoutMs: 60_000 }).catch(() => undefined)
      for (const s of swapped.reverse()) await sh(ROLLBACK, [t.cacheDir, s.sub, s.prev ?? '', `${t.cacheDir}/${s.sub}.failed-${stamp}`], 60_000).catch(() => undefined)
      const started = await remote.run(host, ['systemctl', 'start', t.serviceName], { sudo: true, timeoutMs: 60_000 }).then((r) => r.code === 0, () => false)
      // Back in service means answering again (bounded wait), not only a started unit.
      let answering = false
      for (const deadline = Date.now() + 30_000; started && !answering && Date.now() < deadline; ) {
        answering = await getVersion(base, { dispatcher: agent, timeoutMs: 2000 }).then((v) => Boolean(v.VulnerabilityDB), () => false)
        if (!answering) await new Promise((r) => setTimeout(r, 250))
      }
      const msg = err instanceof LabctlError ? err.message : oneLine(errorMessage(err))
      throw new LabctlError(`${msg}; the previous DB was put back${started ? ` and ${t.serviceName} started${answering ? ' (answering with it)' : ' (not answering yet)'}` : ` but ${t.serviceName} did not start`}`, {
        code: 'LOAD_ROLLED_BACK',
        suggestion: started ? `the failed copy is kept as ${t.cacheDir}/<db>.failed-${stamp}; read \`labctl trivy logs --host ${host.name} -n 50\`` : `start it: \`labctl trivy restart --host ${host.name}\`, then read \`labctl trivy logs --host ${host.name}\``,
      })
    }
    throw err
  } finally {
    await agent.close()
    await Promise.allSettled(staged.map((s) => remote.run(host, ['rm', '-rf', '--', s.stage], { sudo: true, timeoutMs: 30_000 })))
  }
}
