// The one list of labctl's Prometheus metric names, and the one text-format writer. Used by
// `labctl trivy check --prometheus` (node_exporter textfile) and by `labctl trivy exporter` (/metrics),
// so both speak the same names; monitoring/labctl-trivy.rules.yml is written against these names.

export type MetricType = 'gauge' | 'counter'
export type MetricDef = { readonly name: string; readonly help: string; readonly type: MetricType }

const g = (name: string, help: string): MetricDef => ({ name, help, type: 'gauge' })
const c = (name: string, help: string): MetricDef => ({ name, help, type: 'counter' })

/** Every metric labctl writes. Labels: `host` is a scanner host's short name, or "edge" (the public URL through HAProxy). */
export const METRICS = {
  // ---- from the scanner host over SSH (trivy check, and the exporter's slow SSH probe)
  dbAge: g('labctl_trivy_db_age_seconds', 'Age of the vulnerability DB (now - UpdatedAt).'),
  diskUsedRatio: g('labctl_trivy_disk_used_ratio', 'Used fraction of the filesystem holding the cache dir.'),
  cacheBytes: g('labctl_trivy_cache_bytes', 'Size of the Trivy cache dir.'),
  checkStatus: g('labctl_trivy_check_status', 'Check outcome: 0 pass, 1 warn, 2 fail, -1 skipped.'),
  journalLines: g('labctl_trivy_journal_lines', 'Journal lines of interest since the check window start.'),
  checkTimestamp: g('labctl_trivy_check_timestamp_seconds', 'When labctl trivy check ran.'),
  serviceRestarts: c('labctl_trivy_service_restarts_total', 'systemd NRestarts of the Trivy service (automatic restarts since the unit was last started by hand).'),
  unitState: g('labctl_trivy_unit_state', 'systemd ActiveState of the Trivy service: 1 for the current state.'),
  // ---- from the server's HTTP API (the exporter's probe; per host when a debugUrl is known, and the edge)
  healthzSuccess: g('labctl_trivy_healthz_success', '1 when /healthz answered 200 "ok" (Trivy always says ok while it serves HTTP: see canary_success).'),
  canarySuccess: g('labctl_trivy_canary_success', '1 when the canary scan was accepted with the token and the DB reported the canary CVEs.'),
  canaryDuration: g('labctl_trivy_canary_duration_seconds', 'Duration of the last canary scan (PutBlob, PutArtifact, Scan).'),
  canaryVulnerabilities: g('labctl_trivy_canary_vulnerabilities', 'Vulnerabilities the DB reported for the canary package (0 = empty or wrong DB).'),
  authProbeStatus: g('labctl_trivy_auth_probe_status_code', 'HTTP status of a Scan sent without a token (probe="no_token") or with a wrong one (probe="wrong_token"); 401 expected.'),
  authOpen: g('labctl_trivy_auth_open', '1 when the server accepted a scan without a valid token (the token check is open).'),
  serverInfo: g('labctl_trivy_server_info', 'The version the server reports (/version) and the inventory pin, as labels; always 1.'),
  versionMatchesPin: g('labctl_trivy_version_matches_pin', '1 when the server version equals the inventory pin.'),
  dbPresent: g('labctl_trivy_db_present', '1 when /version reports a vulnerability DB.'),
  dbUpdated: g('labctl_trivy_db_updated_timestamp_seconds', 'DB UpdatedAt (/version), Unix time.'),
  dbNextUpdate: g('labctl_trivy_db_next_update_timestamp_seconds', 'DB NextUpdate (/version), Unix time.'),
  tlsCertExpiry: g('labctl_trivy_tls_cert_expiry_seconds', 'Seconds until the edge certificate expires (negative once expired).'),
  tlsCertValid: g('labctl_trivy_tls_cert_valid', '1 when the edge certificate chain verifies and covers the public name.'),
  // ---- the inventory's thresholds, so the alert rules need no copy of them
  dbFreshnessSla: g('labctl_trivy_db_freshness_sla_seconds', 'The inventory DB freshness SLA (thresholds.dbFreshnessHours).'),
  diskWarnRatio: g('labctl_trivy_disk_warn_ratio', 'The inventory disk warning threshold (thresholds.diskWarnPercent / 100).'),
  diskCritRatio: g('labctl_trivy_disk_crit_ratio', 'The inventory disk critical threshold (thresholds.diskCritPercent / 100).'),
  certWarnSeconds: g('labctl_trivy_tls_cert_warn_seconds', 'The inventory certificate warning threshold (thresholds.certWarnDays), in seconds.'),
  certCritSeconds: g('labctl_trivy_tls_cert_crit_seconds', 'The inventory certificate critical threshold (thresholds.certCritDays), in seconds.'),
  // ---- the exporter itself
  probeSuccess: g('labctl_trivy_probe_success', '1 when the exporter got a verdict from the last run of this probe (0: timeout, unreachable, unexpected answer).'),
  probeDuration: g('labctl_trivy_probe_duration_seconds', 'Duration of the last run of this probe.'),
  probeTimestamp: g('labctl_trivy_probe_timestamp_seconds', 'When this probe last finished, Unix time.'),
  probeRuns: c('labctl_trivy_probe_runs_total', 'Runs of this probe since the exporter started.'),
  probeErrors: c('labctl_trivy_probe_errors_total', 'Runs of this probe that ended without a verdict (timeout, unreachable, unexpected answer).'),
  probeSkipped: c('labctl_trivy_probe_skipped_total', 'Scheduled runs skipped because the previous run of this probe had not finished.'),
  exporterScrapes: c('labctl_trivy_exporter_requests_total', 'HTTP requests served by the exporter, by path and status code.'),
  exporterInfo: g('labctl_trivy_exporter_info', 'The exporter: lab name and probe intervals as labels; always 1.'),
} as const satisfies Record<string, MetricDef>

export type Sample = readonly [labels: Record<string, string>, value: number | undefined]
export type Family = { metric: MetricDef; samples: readonly Sample[] }

/** A label value in the text format: backslash, double quote and newline escaped. */
export function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN'
  if (v === Infinity) return '+Inf'
  if (v === -Infinity) return '-Inf'
  return String(v)
}

/**
 * Prometheus text exposition format 0.0.4. Samples without a value are left out, and a family with no
 * sample at all is not written (an absent series, not a 0, when labctl does not know).
 */
export function formatMetrics(families: readonly Family[]): string {
  const lines: string[] = []
  for (const f of families) {
    const present = f.samples.filter((s): s is readonly [Record<string, string>, number] => typeof s[1] === 'number')
    if (!present.length) continue
    lines.push(`# HELP ${f.metric.name} ${f.metric.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${f.metric.name} ${f.metric.type}`)
    for (const [labels, v] of present) {
      const l = Object.entries(labels).map(([k, val]) => `${k}="${escapeLabel(val)}"`).join(',')
      lines.push(`${f.metric.name}${l ? `{${l}}` : ''} ${formatValue(v)}`)
    }
  }
  return lines.length ? `${lines.join('\n')}\n` : ''
}
