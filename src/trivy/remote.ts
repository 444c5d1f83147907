// Day-2 operations on the scanner hosts over SSH: status, check, logs, exec. One SSH connection per
// host per labctl run (the pool), every remote command built from an argv, privileged steps via sudo -n.
import semver from 'semver'
import { z } from 'zod'
import type { ScannerHost } from '../inventory/schema.js'
import type { LoadedInventory } from '../inventory/load.js'
import { describeNetError } from '../net/http.js'
import { run, type RunOptions } from '../ssh/index.js'
import { fail, pass, skip, warn, type CheckResult } from '../checks/types.js'
import { getVersion } from './api.js'
import { hostBase, trivyAgent } from './endpoint.js'
import { quietTrivyAssignments } from './quiet.js'
import { METRICS, formatMetrics, type Sample } from './metrics.js'

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
  problems: string[]
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

/**
 * A systemd timestamp (`Tue 2026-12-01 09:14:03 CET`, as `systemctl show` prints it in the host's own time
 * zone; `@1796112843`; or with a numeric offset) as epoch milliseconds. `epochSeconds` is the host's own
 * reading of it (`date -d`), which knows the host's zone; without it only UTC, numeric offsets and
 * unambiguous zone abbreviations are understood. NaN when the time cannot be known.
 */
export function parseSystemdTimestamp(text: string | undefined, epochSeconds?: string): number {
  const epoch = (epochSeconds ?? '').trim()
  if (/^\d{1,12}$/.test(epoch)) return Number(epoch) * 1000
  const t = (text ?? '').trim()
  const unix = /^@(\d{1,12})(?:\.\d+)?$/.exec(t)
  if (unix) return Number(unix[1]) * 1000
  const m = /^(?:[A-Za-z]{3} )?(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?(?: ([A-Za-z]{1,6}|[+-]\d{2}:?\d{2}))?$/.exec(t)
  if (!m) return NaN
  const [, date, time, frac, zone] = m as unknown as [string, string, string, string | undefined, string | undefined]
  const local = Date.parse(`${date}T${time}${frac ? `.${frac.padEnd(3, '0').slice(0, 3)}` : ''}Z`)
  const offset = zoneOffsetMinutes(zone ?? 'UTC')
  return offset === undefined ? NaN : local - offset * 60_000
}

/** Zone abbreviations that mean one offset wherever they are used (IST, CST, BST … are ambiguous: not here). */
const ZONES: Record<string, number> = {
  UTC: 0, GMT: 0, Z: 0, UT: 0, WET: 0, WEST: 60, CET: 60, CEST: 120, MET: 60, MEST: 120, EET: 120, EEST: 180, MSK: 180,
  EST: -300, EDT: -240, PST: -480, PDT: -420, MST: -420, MDT: -360, AKST: -540, AKDT: -480, HST: -600,
  JST: 540, KST: 540, HKT: 480, SGT: 480, AEST: 600, AEDT: 660, ACST: 570, ACDT: 630, AWST: 480, NZST: 720, NZDT: 780,
}

function zoneOffsetMinutes(zone: string): number | undefined {
  const n = /^([+-])(\d{2}):?(\d{2})$/.exec(zone)
  if (n) return (n[1] === '-' ? -1 : 1) * (Number(n[2]) * 60 + Number(n[3]))
  return ZONES[zone.toUpperCase()]
}

/** The unit's state from `systemctl show` and the host's own epoch reading of ActiveEnterTimestamp. */
export function unitStateOf(show: Record<string, string>, sinceEpoch: string | undefined, now = Date.now()): UnitState {
  const since = show.ActiveEnterTimestamp && show.ActiveEnterTimestamp !== 'n/a' ? show.ActiveEnterTimestamp : undefined
  const sinceMs = since ? parseSystemdTimestamp(since, sinceEpoch) : NaN
  return {
    active: show.ActiveState || 'unknown',
    sub: show.SubState || 'unknown',
    enabled: show.UnitFileState || 'unknown',
    mainPid: Number(show.MainPID || 0),
    restarts: Number(show.NRestarts || 0),
    ...(since ? { since } : {}),
    ...(Number.isFinite(sinceMs) ? { uptimeSeconds: Math.max(0, Math.round((now - sinceMs) / 1000)) } : {}),
  }
}

export const STATUS_SCRIPT = `
svc=$1; shift
show=$(systemctl show "$svc" -p ActiveState,SubState,MainPID,NRestarts,UnitFileState,ActiveEnterTimestamp --no-pager 2>/dev/null)
printf '%s\n' "$show"
echo "@@since"
ts=$(printf '%s\n' "$show" | sed -n 's/^ActiveEnterTimestamp=//p')
if [ -n "$ts" ] && [ "$ts" != n/a ]; then date -d "$ts" +%s 2>/dev/null; fi
echo "@@trivy"
env ${quietTrivyAssignments().join(' ')} trivy --version 2>/dev/null | sed -n 's/^Version: //p' | head -n1
echo "@@listen"
pid=$(systemctl show "$svc" -p MainPID --value 2>/dev/null)
if [ -n "$pid" ] && [ "$pid" != 0 ] && command -v ss >/dev/null; then ss -ltnpH 2>/dev/null | grep "pid=$pid," | awk '{print $4}'; fi
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
  const base = hostBase(inv, host)
  const agent = trivyAgent(loaded, { connectTimeoutMs: opts.timeoutMs })
  const version = getVersion(base, { dispatcher: agent, timeoutMs: opts.timeoutMs })
  const [r, v] = await Promise.allSettled([remote, version])
  await agent.close()
  if (r.status === 'rejected') throw r.reason
  const s = sections(r.value.stdout)
  const show = parseShow(s.head ?? '')
  const unit = unitStateOf(show, s.since)
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

/** node_exporter textfile collector format; the names are the shared ones of metrics.ts. */
export function toPrometheus(results: HostCheck[], now = Date.now()): string {
  const status = { pass: 0, warn: 1, fail: 2, skip: -1 } as const
  return formatMetrics([
    { metric: METRICS.dbAge, samples: results.map((r) => [{ host: r.host }, r.metrics.dbAgeSeconds]) },
    { metric: METRICS.diskUsedRatio, samples: results.map((r) => [{ host: r.host }, r.metrics.diskUsedRatio]) },
    { metric: METRICS.cacheBytes, samples: results.map((r) => [{ host: r.host }, r.metrics.cacheBytes]) },
    { metric: METRICS.checkStatus, samples: results.flatMap((r) => r.checks.map((c): Sample => [{ host: r.host, check: c.check }, status[c.status]])) },
    { metric: METRICS.journalLines, samples: results.flatMap((r) => Object.entries(r.metrics.journal).map(([kind, v]): Sample => [{ host: r.host, kind }, v])) },
    { metric: METRICS.checkTimestamp, samples: [[{}, Math.round(now / 1000)]] },
  ])
}
