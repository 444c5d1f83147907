import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { z } from 'zod'
import { oneLine } from '../errors.js'
import { redactText } from '../redact.js'
import { which } from '../which.js'
import { QUIET_TRIVY_ENV } from './quiet.js'


/** The local trivy client: LABCTL_TRIVY_BIN, else `trivy` on PATH. */
export function findTrivyClient(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env.LABCTL_TRIVY_BIN || which('trivy')
}

export async function clientVersion(bin: string, timeoutMs = 10_000): Promise<string> {
  const { execa } = await import('execa')
  const r = await execa(bin, ['version', '--format', 'json'], { timeout: timeoutMs, env: { ...QUIET_TRIVY_ENV } })
  return z.object({ Version: z.string() }).parse(JSON.parse(r.stdout)).Version
}

export const SEVERITIES = ['CRITICAL', 'HIGH', 'MEDIUM', 'LOW', 'UNKNOWN'] as const
export type SeverityCounts = Record<(typeof SEVERITIES)[number], number>

const ReportSchema = z.object({
  Results: z.array(z.object({ Target: z.string().optional(), Vulnerabilities: z.array(z.object({ VulnerabilityID: z.string(), Severity: z.string() })).nullish() })).nullish(),
})

export type ImageScan = { ok: true; counts: SeverityCounts; ids: string[] } | { ok: false; detail: string; unauthorized: boolean }

/**
 * A real `trivy image --server URL --format json REF`. The token reaches trivy through its
 * environment (TRIVY_TOKEN), never argv; names resolve through labctl's lab-DNS proxy when given.
 */
export async function scanImage(opts: {
  bin: string
  serverUrl: string
  image: string
  token: string
  tokenHeader: string
  caFile?: string | undefined
  proxyUrl?: string | undefined
  timeoutMs: number
  signal?: AbortSignal
}): Promise<ImageScan> {
  const cache = mkdtempSync(join(tmpdir(), 'labctl-trivy-client-'))
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: cache,
    TRIVY_TOKEN: opts.token,
    TRIVY_TOKEN_HEADER: opts.tokenHeader,
    ...QUIET_TRIVY_ENV,
  }
  if (opts.caFile) env.SSL_CERT_FILE = opts.caFile
  if (opts.proxyUrl) env.HTTPS_PROXY = opts.proxyUrl
  try {
    const { execa } = await import('execa')
    const r = await execa(
      opts.bin,
      ['image', '--server', opts.serverUrl, '--format', 'json', '--quiet', '--scanners', 'vuln', '--skip-version-check', '--disable-telemetry', '--skip-java-db-update', '--skip-check-update', '--image-src', 'remote', '--cache-dir', cache, '--timeout', `${Math.ceil(opts.timeoutMs / 1000)}s`, opts.image],
      { env, extendEnv: false, timeout: opts.timeoutMs + 5000, reject: false, ...(opts.signal ? { cancelSignal: opts.signal } : {}) },
    )
    if (r.exitCode !== 0) {
      const err = redactText(String(r.stderr ?? ''), [opts.token])
      const unauthorized = /401|unauthenticated|invalid token/i.test(err)
      const line = err.split('\n').reverse().find((l) => /FATAL|error/i.test(l)) ?? err.split('\n').filter(Boolean).at(-1) ?? `exit ${r.exitCode}`
      return { ok: false, unauthorized, detail: oneLine(r.timedOut ? `trivy image timed out after ${opts.timeoutMs} ms` : line, 400) }
    }
    const report = ReportSchema.parse(JSON.parse(String(r.stdout)))
    const counts: SeverityCounts = { CRITICAL: 0, HIGH: 0, MEDIUM: 0, LOW: 0, UNKNOWN: 0 }
    const ids: string[] = []
    for (const res of report.Results ?? []) {
      for (const v of res.Vulnerabilities ?? []) {
        const sev = (SEVERITIES as readonly string[]).includes(v.Severity) ? (v.Severity as keyof SeverityCounts) : 'UNKNOWN'
        counts[sev] += 1
        ids.push(v.VulnerabilityID)
      }
    }
    return { ok: true, counts, ids }
  } finally {
    rmSync(cache, { recursive: true, force: true })
  }
}
