export type CheckStatus = 'pass' | 'warn' | 'fail' | 'skip'

/** One check's outcome: what, where, how it went, what to do about it. */
export type CheckResult = {
  /** Check family, used by --only/--skip: dns, tls, healthz, version, db, scan, auth, image. */
  check: string
  /** Human name, e.g. "dns trivy-0.sub.comptech-lab.com". */
  name: string
  /** Scanner host name, or "edge" for the public endpoint through HAProxy. */
  host: string
  status: CheckStatus
  detail: string
  /** What to do next when it did not pass. */
  fix?: string
  durationMs: number
}

export type CheckSpec = {
  check: string
  name: string
  host: string
  timeoutMs: number
  /** What to do next when the check could not even complete (timeout, refused, TLS error). */
  fix?: string
  run: (signal: AbortSignal) => Promise<Omit<CheckResult, 'check' | 'name' | 'host' | 'durationMs'>>
}

/** Runs one check under its own deadline; a thrown error becomes a failed check, never a crash. */
export async function runCheck(spec: CheckSpec, describeError: (err: unknown) => string): Promise<CheckResult> {
  const started = performance.now()
  const ac = new AbortController()
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      ac.abort()
      reject(Object.assign(new Error(`timed out after ${spec.timeoutMs} ms`), { code: 'CHECK_TIMEOUT' }))
    }, spec.timeoutMs)
  })
  try {
    const r = await Promise.race([spec.run(ac.signal), deadline])
    return { check: spec.check, name: spec.name, host: spec.host, ...r, durationMs: Math.round(performance.now() - started) }
  } catch (err) {
    return {
      check: spec.check,
      name: spec.name,
      host: spec.host,
      status: 'fail',
      detail: describeError(err),
      ...(spec.fix ? { fix: spec.fix } : {}),
      durationMs: Math.round(performance.now() - started),
    }
  } finally {
    clearTimeout(timer)
  }
}

export const pass = (detail: string) => ({ status: 'pass' as const, detail })
export const warn = (detail: string, fix?: string) => ({ status: 'warn' as const, detail, ...(fix ? { fix } : {}) })
export const fail = (detail: string, fix?: string) => ({ status: 'fail' as const, detail, ...(fix ? { fix } : {}) })
export const skip = (detail: string) => ({ status: 'skip' as const, detail })

export type CheckSummary = { pass: number; warn: number; fail: number; skip: number }

/** How many checks ended in each status. */
export function summarize(checks: readonly CheckResult[]): CheckSummary {
  const s: CheckSummary = { pass: 0, warn: 0, fail: 0, skip: 0 }
  for (const c of checks) s[c.status] += 1
  return s
}
