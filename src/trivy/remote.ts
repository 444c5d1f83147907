// Day-2 operations on the scanner hosts over SSH: status, check, logs, exec. One SSH connection per
// host per labctl run (the pool), every remote command built from an argv, privileged steps via sudo -n.
import semver from 'semver'
import { z } from 'zod'
import type { ScannerHost } from '../inventory/schema.js'
import { inventoryPath, type LoadedInventory } from '../inventory/load.js'
import { describeNetError, labAgent } from '../net/http.js'
import { run, type RunOptions } from '../ssh/index.js'
import { fail, pass, skip, warn, type CheckResult } from '../checks/types.js'
import { getVersion } from './api.js'

export type UnitState = {
  active: string
  sub: string
  enabled: string
  mainPid: number
  since?: string
  uptimeSeconds?: number
  restarts: number
}

export type HostStatus = {
  host: string
  ok: boolean
  unit: UnitState
  listening: string[]
  installed?: string
  pinned: string
  versionMatchesPin: boolean
  server?: { version: string; db?: { updatedAt: string; nextUpdate?: string; downloadedAt?: string } }
  serverError?: string
  /** The unit's sandboxing as the host's real systemd judges it (`systemd-analyze security`): 0 best … 10 worst. */
  security?: { exposure: number; rating: string }
  problems: string[]
}

/** `→ Overall exposure level for trivy-server.service: 3.1 OK 🙂` → { exposure: 3.1, rating: 'OK' }. */
export function parseExposure(text: string): { exposure: number; rating: string } | undefined {
  const m = /Overall exposure level for \S+:\s*(\d+(?:\.\d+)?)\s+([A-Z]+)/.exec(text)
  return m ? { exposure: Number(m[1]), rating: m[2]! } : undefined
}

/** Parses `systemctl show -p A,B,…` output (KEY=VALUE lines). */
export function parseShow(text: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const line of text.split('\n')) {
    const i = line.indexOf('=')
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1).trim()
  }
  return out
}

const STATUS_SCRIPT = `
svc=$1
systemctl show "$svc" -p ActiveState,SubState,MainPID,NRestarts,UnitFileState,ActiveEnterTimestamp --no-pager 2>/dev/null
echo "@@trivy"
trivy --version 2>/dev/null | sed -n 's/^Version: //p' | head -n1
echo "@@listen"
pid=$(systemctl show "$svc" -p MainPID --value 2>/dev/null)
if [ -n "$pid" ] && [ "$pid" != 0 ] && command -v ss >/dev/null; then ss -ltnpH 2>/dev/null | grep "pid=$pid," | awk '{print $4}'; fi
echo "@@security"
if command -v systemd-analyze >/dev/null 2>&1; then systemd-analyze security --no-pager "$svc" 2>/dev/null | grep 'Overall exposure level'; fi
`

/** Splits a remote script's output at `@@name` marker lines (one SSH round trip, several answers). */
export function sections(text: string): Record<string, string> {
  const out: Record<string, string> = {}
  let name = 'head'
  for (const line of text.split('\n')) {
    const m = /^@@(\w+)$/.exec(line)
    if (m) {
      name = m[1]!
      out[name] = ''
    } else out[name] = `${out[name] ?? ''}${line}\n`
  }
  return out
}

export async function hostStatus(loaded: LoadedInventory, host: ScannerHost, opts: { timeoutMs: number }): Promise<HostStatus> {
  const inv = loaded.inventory
  const remote = run(host, ['sh', '-c', STATUS_SCRIPT, 'labctl-status', inv.trivy.serviceName], { sudo: true, timeoutMs: opts.timeoutMs, check: true })
  const base = host.debugUrl ? new URL(host.debugUrl).origin : inv.trivy.publicUrl
  const caFile = inv.trivy.caBundle ? inventoryPath(loaded, inv.trivy.caBundle) : undefined
  const agent = labAgent({ dnsServers: inv.dns.servers, dnsTimeoutMs: inv.dns.timeoutMs, caFile, connectTimeoutMs: opts.timeoutMs })
  const version = getVersion(base, { dispatcher: agent, timeoutMs: opts.timeoutMs })
  const [r, v] = await Promise.allSettled([remote, version])
  await agent.close()
  if (r.status === 'rejected') throw r.reason
  const s = sections(r.value.stdout)
  const show = parseShow(s.head ?? '')
  const since = show.ActiveEnterTimestamp || undefined
  const sinceMs = since ? Date.parse(since.replace(/^\w{3} /, '').replace(/ UTC$/, 'Z').replace(' ', 'T')) : NaN
  const unit: UnitState = {
    active: show.ActiveState || 'unknown',
    sub: show.SubState || 'unknown',
    enabled: show.UnitFileState || 'unknown',
    mainPid: Number(show.MainPID || 0),
    restarts: Number(show.NRestarts || 0),
    ...(since ? { since } : {}),
    ...(Number.isFinite(sinceMs) ? { uptimeSeconds: Math.max(0, Math.round((Date.now() - sinceMs) / 1000)) } : {}),
  }
  const installed = (s.trivy ?? '').trim() || undefined
  const pinned = inv.trivy.version
  const versionMatchesPin = Boolean(installed && semver.valid(installed) && semver.eq(installed, pinned))
  const problems: string[] = []
  if (unit.active !== 'active') problems.push(`${inv.trivy.serviceName} is ${unit.active} (${unit.sub})`)
  if (unit.enabled !== 'enabled') problems.push(`${inv.trivy.serviceName} is not enabled (${unit.enabled}): it will not start at boot`)
  if (!installed) problems.push('trivy is not installed')
  else if (!versionMatchesPin) problems.push(`installed trivy ${installed} differs from the pin ${pinned}`)
  const status: HostStatus = {
    host: host.name,
    ok: false,
    unit,
    listening: (s.listen ?? '').split('\n').map((l) => l.trim()).filter(Boolean),
    ...(installed ? { installed } : {}),
    ...(parseExposure(s.security ?? '') ? { security: parseExposure(s.security ?? '')! } : {}),
    pinned,
    versionMatchesPin,
    problems,
  }
  if (v.status === 'fulfilled') {
    const db = v.value.VulnerabilityDB
    status.server = {
      version: v.value.Version,
      ...(db ? { db: { updatedAt: db.UpdatedAt, ...(db.NextUpdate ? { nextUpdate: db.NextUpdate } : {}), ...(db.DownloadedAt ? { downloadedAt: db.DownloadedAt } : {}) } } : {}),
    }
    if (installed && v.value.Version !== installed) problems.push(`the running server reports ${v.value.Version} but ${installed} is installed: restart it`)
  } else {
    status.serverError = `/version: ${describeNetError(v.reason)}`
    problems.push(status.serverError)
  }
  status.ok = problems.length === 0
  return status
}

// ---------------------------------------------------------------- check

const CHECK_SCRIPT = `
dir=$1; svc=$2; since=$3
echo "@@df"; df -P -B1 "$dir" 2>/dev/null | tail -n 1
echo "@@mount"; df -P "$dir" 2>/dev/null | tail -n 1 | awk '{print $6}'
echo "@@du"; du -sb "$dir" 2>/dev/null | cut -f1
echo "@@meta"; cat "$dir/db/metadata.json" 2>/dev/null || echo MISSING
echo "@@db"
if [ -f "$dir/db/trivy.db" ]; then
  stat -c %s "$dir/db/trivy.db"
  head -c 32 "$dir/db/trivy.db" | od -An -tx1 | tr -d ' \\n'; echo
  if flock -n -s "$dir/db/trivy.db" true 2>/dev/null; then echo unlocked; else echo locked; fi
else echo MISSING; fi
echo "@@journal"
journalctl -u "$svc" --since "$since" --no-pager -o cat 2>/dev/null | awk '
  /panic:|goroutine [0-9]+ \\[/ { p++ }
  /\\tERROR\\t|\\tFATAL\\t|level=error/ { e++ }
  /invalid token|unauthenticated/ { t++ }
  /" 5[0-9][0-9] | status=5[0-9][0-9]|HTTP status code 5[0-9][0-9]/ { x++ }
  END { printf "panics=%d errors=%d invalid_token=%d http5xx=%d\\n", p, e, t, x }'
`

const MetaSchema = z.object({ Version: z.number(), NextUpdate: z.string().optional(), UpdatedAt: z.string(), DownloadedAt: z.string().optional() })

export type HostCheck = {
  host: string
  checks: CheckResult[]
  metrics: { dbAgeSeconds?: number; diskUsedRatio?: number; cacheBytes?: number; journal: Record<string, number> }
}

/** bbolt's meta page magic (0xED0CDAED, little endian) sits at byte 16 of the file. */
const BOLT_MAGIC = 'edda0ced'

export async function hostCheck(loaded: LoadedInventory, host: ScannerHost, opts: { since: string; timeoutMs: number }): Promise<HostCheck> {
  const inv = loaded.inventory
  const t = inv.thresholds
  const started = performance.now()
  const r = await run(host, ['sh', '-c', CHECK_SCRIPT, 'labctl-check', inv.trivy.cacheDir, inv.trivy.serviceName, opts.since], {
    sudo: true,
    timeoutMs: opts.timeoutMs,
    check: true,
  } satisfies RunOptions)
  const durationMs = Math.round(performance.now() - started)
  const s = sections(r.stdout)
  const checks: CheckResult[] = []
  const metrics: HostCheck['metrics'] = { journal: {} }
  const add = (check: string, name: string, res: { status: CheckResult['status']; detail: string; fix?: string }): void => {
    checks.push({ check, name, host: host.name, durationMs, ...res })
  }

  // Disk: the cache dir's filesystem, and the cache's own size.
  const df = (s.df ?? '').trim().split(/\s+/)
  const total = Number(df[1])
  const used = Number(df[2])
  if (df.length >= 6 && total > 0) {
    const pct = (used / total) * 100
    metrics.diskUsedRatio = used / total
    const cache = Number((s.du ?? '').trim())
    if (Number.isFinite(cache)) metrics.cacheBytes = cache
    const mount = (s.mount ?? '').trim()
    const detail = `${inv.trivy.cacheDir} on ${mount}: ${pct.toFixed(1)}% used (${gib(used)} of ${gib(total)}), cache ${Number.isFinite(cache) ? gib(cache) : '?'}`
    const fix = `free space (\`labctl trivy exec -- clean --scan-cache\`) or grow the disk; see \`labctl runbook run disk-full\``
    if (pct >= t.diskCritPercent) add('disk', 'disk', fail(`${detail}: above ${t.diskCritPercent}%`, fix))
    else if (pct >= t.diskWarnPercent) add('disk', 'disk', warn(`${detail}: above ${t.diskWarnPercent}%`, fix))
    else add('disk', 'disk', pass(detail))
  } else {
    add('disk', 'disk', fail(`cannot read disk use of ${inv.trivy.cacheDir} (does it exist?)`, `create it: \`labctl trivy install\``))
  }

  // DB metadata freshness.
  const metaText = (s.meta ?? '').trim()
  if (metaText === 'MISSING' || !metaText) {
    add('db-freshness', 'db freshness', fail(`${inv.trivy.cacheDir}/db/metadata.json is missing: the server has no DB`, `\`labctl trivy reset-db --host ${host.name}\``))
  } else {
    let meta: z.infer<typeof MetaSchema> | undefined
    try {
      meta = MetaSchema.parse(JSON.parse(metaText))
    } catch {
      add('db-freshness', 'db freshness', fail('metadata.json is not valid JSON', `\`labctl trivy reset-db --host ${host.name}\``))
    }
    if (meta) {
      const ageS = (Date.now() - Date.parse(meta.UpdatedAt)) / 1000
      const detail = `UpdatedAt ${meta.UpdatedAt} (${(ageS / 3600).toFixed(1)} h ago), NextUpdate ${meta.NextUpdate ?? '-'}, DownloadedAt ${meta.DownloadedAt ?? '-'}`
      if (!Number.isFinite(ageS) || meta.UpdatedAt.startsWith('0001-')) {
        add('db-freshness', 'db freshness', fail(`metadata has no update time: the DB was never downloaded completely`, `\`labctl trivy reset-db --host ${host.name}\``))
      } else {
        metrics.dbAgeSeconds = Math.round(ageS)
        if (ageS > t.dbFreshnessHours * 3600) {
          add('db-freshness', 'db freshness', fail(`DB is stale: ${detail}; SLA ${t.dbFreshnessHours} h`, `check the DB mirror and the server's updates: \`labctl runbook run db-stale\``))
        } else add('db-freshness', 'db freshness', pass(detail))
      }
    }
  }

  // The DB file itself: present, non-empty, a bbolt file, not held by an exclusive lock.
  const dbLines = (s.db ?? '').trim().split('\n')
  if (dbLines[0] === 'MISSING' || !dbLines[0]) {
    add('db-file', 'db file', fail(`${inv.trivy.cacheDir}/db/trivy.db is missing`, `\`labctl trivy reset-db --host ${host.name}\``))
  } else {
    const size = Number(dbLines[0])
    const head = dbLines[1] ?? ''
    const lock = dbLines[2] ?? ''
    const resetFix = `the DB is corrupted: \`labctl trivy reset-db --host ${host.name}\` (or \`labctl runbook run scan-500\`)`
    if (size === 0) add('db-file', 'db file', fail('trivy.db is empty (0 bytes)', resetFix))
    else if (head.slice(32, 40) !== BOLT_MAGIC) add('db-file', 'db file', fail(`trivy.db (${gib(size)}) is not a bbolt database (bad magic): corrupted`, resetFix))
    else if (lock === 'locked') add('db-file', 'db file', fail('trivy.db is held by an exclusive lock (a stuck download or a second process?)', `find the holder: \`labctl trivy exec\` is not enough — check \`sudo lsof ${inv.trivy.cacheDir}/db/trivy.db\` on ${host.name}`))
    else add('db-file', 'db file', pass(`trivy.db ${gib(size)}, bbolt, not exclusively locked`))
  }

  // The journal since --since.
  const j = /panics=(\d+) errors=(\d+) invalid_token=(\d+) http5xx=(\d+)/.exec(s.journal ?? '')
  if (j) {
    const [panics, errors, invalidToken, http5xx] = j.slice(1).map(Number) as [number, number, number, number]
    metrics.journal = { panics, errors, invalid_token: invalidToken, http5xx }
    const detail = `since ${opts.since}: ${panics} panics, ${errors} errors, ${invalidToken} invalid-token, ${http5xx} 5xx`
    const fix = `read them: \`labctl trivy logs --host ${host.name} --since '${opts.since}'\``
    if (panics > 0) add('journal', 'journal', fail(detail, fix))
    else if (errors > 0 || http5xx > 0 || invalidToken > 0) add('journal', 'journal', warn(detail, fix))
    else add('journal', 'journal', pass(detail))
  } else add('journal', 'journal', skip('journal not readable'))
  return { host: host.name, checks, metrics }
}

function gib(bytes: number): string {
  if (bytes >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(1)} GiB`
  if (bytes >= 1024 ** 2) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`
  return `${(bytes / 1024).toFixed(0)} KiB`
}

/** node_exporter textfile collector format. */
export function toPrometheus(results: HostCheck[], now = Date.now()): string {
  const lines: string[] = []
  const metric = (name: string, help: string, rows: Array<[Record<string, string>, number | undefined]>): void => {
    const present = rows.filter((r): r is [Record<string, string>, number] => r[1] !== undefined && Number.isFinite(r[1]))
    if (!present.length) return
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`)
    for (const [labels, v] of present) {
      const l = Object.entries(labels).map(([k, val]) => `${k}="${val.replace(/["\\\n]/g, '_')}"`).join(',')
      lines.push(`${name}{${l}} ${v}`)
    }
  }
  metric('labctl_trivy_db_age_seconds', 'Age of the vulnerability DB (now - UpdatedAt).', results.map((r) => [{ host: r.host }, r.metrics.dbAgeSeconds]))
  metric('labctl_trivy_disk_used_ratio', 'Used fraction of the filesystem holding the cache dir.', results.map((r) => [{ host: r.host }, r.metrics.diskUsedRatio]))
  metric('labctl_trivy_cache_bytes', 'Size of the Trivy cache dir.', results.map((r) => [{ host: r.host }, r.metrics.cacheBytes]))
  metric(
    'labctl_trivy_check_status',
    'Check outcome: 0 pass, 1 warn, 2 fail, -1 skipped.',
    results.flatMap((r) => r.checks.map((c): [Record<string, string>, number] => [{ host: r.host, check: c.check }, { pass: 0, warn: 1, fail: 2, skip: -1 }[c.status]])),
  )
  metric(
    'labctl_trivy_journal_lines',
    'Journal lines of interest since the check window start.',
    results.flatMap((r) => Object.entries(r.metrics.journal).map(([kind, v]): [Record<string, string>, number] => [{ host: r.host, kind }, v])),
  )
  metric('labctl_trivy_check_timestamp_seconds', 'When labctl trivy check ran.', [[{}, Math.round(now / 1000)]])
  return `${lines.join('\n').replace(/\{\}/g, '')}\n`
}
