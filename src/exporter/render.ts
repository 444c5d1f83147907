// The exporter's cached probe results as Prometheus metrics (names from src/trivy/metrics.ts).
import semver from 'semver'
import type { Inventory } from '../inventory/schema.js'
import { METRICS, formatMetrics, type Family, type Sample } from '../trivy/metrics.js'
import type { HttpObservation, SshObservation } from './model.js'
import type { JobState } from './scheduler.js'

/** systemd ActiveState values: each gets a series, 1 for the current one (as node_exporter's systemd collector). */
export const UNIT_STATES = ['active', 'reloading', 'inactive', 'failed', 'activating', 'deactivating', 'maintenance', 'unknown'] as const

export type RenderInput = {
  inventory: Inventory
  states: Array<JobState<unknown>>
  /** Exporter-level series (requests served, info); left out for /probe. */
  exporter?: { requests: Map<string, number>; httpIntervalS: number; sshIntervalS: number }
  now?: number
}

const bool = (b: boolean | undefined): number | undefined => (b === undefined ? undefined : b ? 1 : 0)

export function renderMetrics(input: RenderInput): string {
  const now = input.now ?? Date.now()
  const inv = input.inventory
  const http = input.states.filter((s) => s.kind === 'http') as Array<JobState<HttpObservation>>
  const ssh = input.states.filter((s) => s.kind === 'ssh') as Array<JobState<SshObservation>>
  const hs = (fn: (o: HttpObservation, host: string) => Sample[]): Sample[] => http.flatMap((s) => (s.last ? fn(s.last, s.target) : []))
  const ss = (fn: (o: SshObservation, host: string) => Sample[]): Sample[] => ssh.flatMap((s) => (s.last ? fn(s.last, s.target) : []))
  const pin = inv.trivy.version
  const httpAge = new Set(http.filter((s) => s.last?.db?.updatedAtSeconds !== undefined).map((s) => s.target))

  const families: Family[] = [
    { metric: METRICS.healthzSuccess, samples: hs((o, host) => [[{ host }, bool(o.healthz)]]) },
    { metric: METRICS.canarySuccess, samples: hs((o, host) => [[{ host }, bool(o.canary?.success)]]) },
    { metric: METRICS.canaryDuration, samples: hs((o, host) => [[{ host }, o.canary?.durationSeconds]]) },
    { metric: METRICS.canaryVulnerabilities, samples: hs((o, host) => [[{ host }, o.canary?.vulnerabilities]]) },
    {
      metric: METRICS.authProbeStatus,
      samples: hs((o, host) => [
        [{ host, probe: 'no_token' }, o.auth?.noToken],
        [{ host, probe: 'wrong_token' }, o.auth?.wrongToken],
      ]),
    },
    { metric: METRICS.authOpen, samples: hs((o, host) => [[{ host }, o.auth ? bool(o.auth.noToken === 200 || o.auth.wrongToken === 200) : undefined]]) },
    { metric: METRICS.serverInfo, samples: hs((o, host) => [[{ host, version: o.version ?? '', pinned: pin }, o.version === undefined ? undefined : 1]]) },
    {
      metric: METRICS.versionMatchesPin,
      samples: hs((o, host) => [[{ host }, o.version === undefined ? undefined : bool(Boolean(semver.valid(o.version)) && semver.eq(o.version, pin))]]),
    },
    { metric: METRICS.dbPresent, samples: hs((o, host) => [[{ host }, bool(o.db?.present)]]) },
    { metric: METRICS.dbUpdated, samples: hs((o, host) => [[{ host }, o.db?.updatedAtSeconds]]) },
    { metric: METRICS.dbNextUpdate, samples: hs((o, host) => [[{ host }, o.db?.nextUpdateSeconds]]) },
    {
      metric: METRICS.dbAge,
      samples: [
        ...hs((o, host) => [[{ host }, o.db?.updatedAtSeconds === undefined ? undefined : Math.round(now / 1000) - o.db.updatedAtSeconds]]),
        // Over SSH (metadata.json) only where /version did not tell: one series per host.
        ...ss((o, host) => [[{ host }, httpAge.has(host) ? undefined : o.dbAgeSeconds]]),
      ],
    },
    { metric: METRICS.tlsCertExpiry, samples: hs((o, host) => [[{ host }, o.tls?.expirySeconds]]) },
    { metric: METRICS.tlsCertValid, samples: hs((o, host) => [[{ host }, bool(o.tls?.valid)]]) },
    { metric: METRICS.diskUsedRatio, samples: ss((o, host) => [[{ host }, o.diskUsedRatio]]) },
    { metric: METRICS.cacheBytes, samples: ss((o, host) => [[{ host }, o.cacheBytes]]) },
    { metric: METRICS.serviceRestarts, samples: ss((o, host) => [[{ host }, o.restarts]]) },
    {
      metric: METRICS.unitState,
      samples: ss((o, host) => {
        if (o.unitState === undefined) return []
        const current = (UNIT_STATES as readonly string[]).includes(o.unitState) ? o.unitState : 'unknown'
        return UNIT_STATES.map((state): Sample => [{ host, state }, state === current ? 1 : 0])
      }),
    },
    { metric: METRICS.checkStatus, samples: ss((o, host) => o.checks.map((c): Sample => [{ host, check: c.check }, { pass: 0, warn: 1, fail: 2, skip: -1 }[c.status]])) },
    { metric: METRICS.journalLines, samples: ss((o, host) => Object.entries(o.journal).map(([kind, v]): Sample => [{ host, kind }, v])) },
    // The inventory's thresholds, for the alert rules.
    { metric: METRICS.dbFreshnessSla, samples: [[{}, inv.thresholds.dbFreshnessHours * 3600]] },
    { metric: METRICS.diskWarnRatio, samples: [[{}, inv.thresholds.diskWarnPercent / 100]] },
    { metric: METRICS.diskCritRatio, samples: [[{}, inv.thresholds.diskCritPercent / 100]] },
    { metric: METRICS.certWarnSeconds, samples: [[{}, inv.thresholds.certWarnDays * 86_400]] },
    { metric: METRICS.certCritSeconds, samples: [[{}, inv.thresholds.certCritDays * 86_400]] },
    // The probes themselves.
    { metric: METRICS.probeSuccess, samples: input.states.map((s): Sample => [{ host: s.target, probe: s.kind }, s.runs ? bool(s.ok) : undefined]) },
    { metric: METRICS.probeDuration, samples: input.states.map((s): Sample => [{ host: s.target, probe: s.kind }, s.durationMs === undefined ? undefined : s.durationMs / 1000]) },
    { metric: METRICS.probeTimestamp, samples: input.states.map((s): Sample => [{ host: s.target, probe: s.kind }, s.finishedAt === undefined ? undefined : Math.round(s.finishedAt / 1000)]) },
    { metric: METRICS.probeRuns, samples: input.states.map((s): Sample => [{ host: s.target, probe: s.kind }, s.runs]) },
    { metric: METRICS.probeErrors, samples: input.states.map((s): Sample => [{ host: s.target, probe: s.kind }, s.failures]) },
    { metric: METRICS.probeSkipped, samples: input.states.map((s): Sample => [{ host: s.target, probe: s.kind }, s.skipped]) },
  ]
  if (input.exporter) {
    const e = input.exporter
    families.push(
      {
        metric: METRICS.exporterScrapes,
        samples: [...e.requests].map(([key, n]): Sample => {
          const [path = '', code = ''] = key.split(' ')
          return [{ path, code }, n]
        }),
      },
      { metric: METRICS.exporterInfo, samples: [[{ lab: inv.name, pinned: pin, http_interval_seconds: String(e.httpIntervalS), ssh_interval_seconds: String(e.sshIntervalS) }, 1]] },
    )
  }
  return formatMetrics(families)
}
