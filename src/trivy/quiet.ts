// The "quiet trivy" environment: wherever labctl runs trivy (locally, on a host, or as the server's own
// EnvironmentFile) it neither phones home (version check, telemetry) nor draws progress bars. Both the
// version check and telemetry must be off, or trivy still contacts its update server.
export const QUIET_TRIVY_ENV: Readonly<Record<string, string>> = Object.freeze({
  TRIVY_SKIP_VERSION_CHECK: 'true',
  TRIVY_DISABLE_TELEMETRY: 'true',
  TRIVY_NO_PROGRESS: 'true',
})

/** The same as `KEY=value` words, for `env KEY=value … trivy` on a remote host (argv, no secrets in it). */
export const quietTrivyAssignments = (): string[] => Object.entries(QUIET_TRIVY_ENV).map(([k, v]) => `${k}=${v}`)

/** The same as pairs, in a stable order (for env files). */
export const quietTrivyPairs = (): Array<[string, string]> => Object.entries(QUIET_TRIVY_ENV)
