// Day-2 operations on the scanner hosts over SSH: status (check is in check.ts). Each takes the run's
// SSH session (`remote`): one connection per host per run, one command per host, sudo -n when needed.
import semver from 'semver'
import { describeNetError } from '../net/http.js'
import { getVersion } from './api.js'
import { hostBase, trivyAgent } from './endpoint.js'
import { quietTrivyAssignments } from './quiet.js'
import { sections, type HostOpOptions } from './host-op.js'

export { sections, type HostOpOptions } from './host-op.js'
export { hostCheck, toPrometheus, type HostCheck } from './check.js'

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
echo "@@security"
if command -v systemd-analyze >/dev/null 2>&1; then systemd-analyze security --no-pager "$svc" 2>/dev/null | grep 'Overall exposure level'; fi
`

export async function hostStatus(opts: HostOpOptions): Promise<HostStatus> {
  const { loaded, host } = opts
  const inv = loaded.inventory
  const remote = opts.remote.run(host, ['sh', '-c', STATUS_SCRIPT, 'labctl-status', inv.trivy.serviceName], { sudo: true, timeoutMs: opts.timeoutMs, check: true })
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
