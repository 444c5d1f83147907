// What the exporter's probes observe. The adapter (probes.ts) fills these from labctl's probe functions;
// the scheduler caches them and render.ts turns them into metrics. Every string in here is one line and
// already redacted (no token).

/** One run of the HTTP probe of a target (a scanner host's debug URL, or the edge's public URL). */
export type HttpObservation = {
  healthz?: boolean
  /** Server version from /version, and the DB as /version reports it (present false: no DB). */
  version?: string
  db?: { present: boolean; updatedAtSeconds?: number; nextUpdateSeconds?: number }
  canary?: { success: boolean; durationSeconds: number; vulnerabilities: number }
  /** HTTP status of a Scan without a token and with a wrong one. */
  auth?: { noToken: number; wrongToken: number }
  /** The edge certificate: seconds left, chain and name verified. */
  tls?: { expirySeconds: number; valid: boolean }
  /** Parts that ended without a verdict (timeout, refused, unexpected answer): one line each. */
  errors: string[]
}

/** One run of the SSH probe of a scanner host. */
export type SshObservation = {
  unitState?: string
  restarts?: number
  diskUsedRatio?: number
  cacheBytes?: number
  dbAgeSeconds?: number
  checks: Array<{ check: string; status: 'pass' | 'warn' | 'fail' | 'skip' }>
  journal: Record<string, number>
  errors: string[]
}

export type ProbeKind = 'http' | 'ssh'

/** A probe target as the exporter schedules it: a scanner host or the edge, and which probes it has. */
export type Target = { name: string; http: boolean; ssh: boolean }

/** The probe functions the exporter calls (probes.ts implements them; tests may pass their own). */
export type ProbeBackend = {
  targets: Target[]
  http(target: string, signal: AbortSignal): Promise<HttpObservation>
  ssh(target: string, signal: AbortSignal): Promise<SshObservation>
  /** Secrets to redact from anything logged or served (the token). */
  secrets: string[]
  close(): Promise<void>
}
