// One judgement of a vulnerability DB's age against the SLA, for every place that reads an UpdatedAt
// (/version, metadata.json, a mirrored layer): validate, check, db status, reset-db's wait.

/** Clock skew tolerated before an UpdatedAt counts as "in the future" (a wrong clock or a forged answer). */
export const FUTURE_SKEW_HOURS = 1

export type DbAge =
  | { kind: 'unknown' }
  | { kind: 'future' | 'stale' | 'fresh'; /** negative in the future */ hours: number }

/** `unknown`: no date, Trivy's zero time (0001-…), or unparseable. A DB from the future is never fresh. */
export function dbAge(updatedAt: string | undefined, slaHours: number, now = Date.now()): DbAge {
  if (!updatedAt || updatedAt.startsWith('0001-')) return { kind: 'unknown' }
  const t = Date.parse(updatedAt)
  if (!Number.isFinite(t)) return { kind: 'unknown' }
  const hours = (now - t) / 3_600_000
  return { kind: hours < -FUTURE_SKEW_HOURS ? 'future' : hours > slaHours ? 'stale' : 'fresh', hours }
}

/** The one-line problem and next step for a DB dated in the future. */
export function futureDbProblem(updatedAt: string, hours: number): { message: string; suggestion: string } {
  return {
    message: `DB UpdatedAt ${updatedAt} is ${(-hours).toFixed(1)} h in the future`,
    suggestion: 'check the clocks of the server and this machine (timedatectl), then reset the DB if it persists',
  }
}
