// What diagnoses branch on: the findings of the check steps (one entry per check of `trivy validate` /
// `trivy check`, the unit and pin of `trivy status`, the error of a command that could not run), their
// exit codes, outcomes, and any value in their JSON.
import { compilePattern, type MatchBudget, type Pattern } from './pattern.js'
import type { Condition, FindingMatch } from './schema.js'

export type FindingStatus = 'pass' | 'warn' | 'fail' | 'skip'
export type Finding = { step: string; check: string; name: string; host: string; status: FindingStatus; detail: string }

/** What a finished step left for later conditions. */
export type StepResult = { step: string; type: string; exitCode: number | null; outcome: string; json?: unknown; findings: Finding[] }

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v)
const str = (v: unknown): string => (typeof v === 'string' ? v : v === undefined || v === null ? '' : String(v))
const STATUSES = new Set(['pass', 'warn', 'fail', 'skip'])

/** Turns a labctl command's JSON result into findings. */
export function findingsOf(step: string, json: unknown): Finding[] {
  const out: Finding[] = []
  if (!isObj(json)) return out
  if (json.status === 'error' && isObj(json.error)) {
    out.push({ step, check: 'error', name: str(json.error.code) || 'error', host: '', status: 'fail', detail: str(json.error.message) })
    return out
  }
  if (Array.isArray(json.checks)) {
    for (const c of json.checks) {
      if (!isObj(c) || !STATUSES.has(str(c.status))) continue
      out.push({ step, check: str(c.check), name: str(c.name) || str(c.check), host: str(c.host), status: c.status as FindingStatus, detail: str(c.detail) })
    }
    return out
  }
  if (Array.isArray(json.hosts)) {
    for (const h of json.hosts) {
      if (!isObj(h)) continue
      const host = str(h.host)
      if (isObj(h.unit)) {
        const active = str(h.unit.active)
        out.push({ step, check: 'unit', name: `unit ${host}`, host, status: active === 'active' ? 'pass' : 'fail', detail: `${active} (${str(h.unit.sub)})` })
      }
      if (typeof h.versionMatchesPin === 'boolean') {
        const running = isObj(h.server) ? str(h.server.version) : ''
        out.push({
          step,
          check: 'pin',
          name: `pin ${host}`,
          host,
          status: h.versionMatchesPin ? 'pass' : 'fail',
          detail: `installed ${str(h.installed) || 'none'}, pin ${str(h.pinned)}${running ? `, running ${running}` : ''}`,
        })
      }
      if (Array.isArray(h.problems)) for (const p of h.problems) out.push({ step, check: 'problem', name: `problem ${host}`, host, status: 'fail', detail: str(p) })
      if (typeof h.exitCode === 'number') {
        out.push({ step, check: 'exec', name: `exec ${host}`, host, status: h.exitCode === 0 ? 'pass' : 'fail', detail: `exit ${h.exitCode}${h.stderr ? `: ${str(h.stderr).trim().split('\n').slice(-1)[0]}` : ''}` })
      }
    }
  }
  return out
}

/** Values at a dotted path; `*` walks every item of an array or value of an object. */
export function valuesAt(json: unknown, path: string): unknown[] {
  let cur: unknown[] = [json]
  for (const part of path.split('.').filter(Boolean)) {
    const next: unknown[] = []
    for (const v of cur) {
      if (part === '*') {
        if (Array.isArray(v)) next.push(...v)
        else if (isObj(v)) next.push(...Object.values(v))
      } else if (Array.isArray(v) && /^\d+$/.test(part)) {
        if (Number(part) < v.length) next.push(v[Number(part)])
      } else if (isObj(v) && part in v) next.push(v[part])
    }
    cur = next
  }
  return cur
}

const list = <T>(v: T | T[]): T[] => (Array.isArray(v) ? v : [v])

/**
 * How much matching one evaluation (a diagnosis, a retry's `while:`) may do, in automaton steps: with
 * linear-time patterns this bounds the time (well under a second) whatever the steps printed.
 */
export const CONDITION_BUDGET = 50_000_000

/** A finding matcher with its patterns compiled once. */
function findingMatcher(m: FindingMatch, budget: MatchBudget): (f: Finding) => boolean {
  const name: Pattern | undefined = m.name !== undefined ? compilePattern(m.name) : undefined
  const detail: Pattern | undefined = m.detail !== undefined ? compilePattern(m.detail) : undefined
  const checks = m.check !== undefined ? list(m.check) : undefined
  const statuses = list(m.status ?? 'fail')
  return (f) => {
    if (checks !== undefined && !checks.includes(f.check)) return false
    if (!statuses.includes(f.status)) return false
    if (m.host !== undefined && f.host !== m.host) return false
    if (name !== undefined && !name.test(f.name, budget)) return false
    if (detail !== undefined && !detail.test(f.detail, budget)) return false
    return true
  }
}

export function matchFinding(f: Finding, m: FindingMatch, budget: MatchBudget = { left: CONDITION_BUDGET }): boolean {
  return findingMatcher(m, budget)(f)
}

export type ConditionContext = {
  results: Record<string, StepResult>
  /** Finding conditions without a step read this step only (retry `while:`), else every check step. */
  self?: string
  /** Shared by every pattern matched in this evaluation (default: a fresh CONDITION_BUDGET). */
  budget?: MatchBudget
}

const poolOf = (m: FindingMatch, ctx: ConditionContext): Finding[] => {
  const step = m.step ?? ctx.self
  return step !== undefined ? (ctx.results[step]?.findings ?? []) : Object.values(ctx.results).filter((r) => r.type === 'check').flatMap((r) => r.findings)
}

/**
 * Whether a condition holds. Patterns are matched in linear time within ctx.budget; a PatternError
 * (a pattern the parser would refuse) or a BudgetExceededError (too much text) is thrown, never a hang.
 */
export function evaluate(c: Condition, ctx: ConditionContext): boolean {
  return evalIn(c, { ...ctx, budget: ctx.budget ?? { left: CONDITION_BUDGET } })
}

function evalIn(c: Condition, ctx: ConditionContext & { budget: MatchBudget }): boolean {
  if (c.finding) {
    const match = findingMatcher(c.finding, ctx.budget)
    return poolOf(c.finding, ctx).some(match)
  }
  if (c.exit) {
    const r = ctx.results[c.exit.step]
    return r !== undefined && r.exitCode !== null && list(c.exit.code).includes(r.exitCode)
  }
  if (c.outcome) {
    const r = ctx.results[c.outcome.step]
    return r !== undefined && list(c.outcome.is).includes(r.outcome)
  }
  if (c.value) {
    const v = c.value
    const r = ctx.results[v.step]
    if (!r) return false
    const matches = v.matches !== undefined ? compilePattern(v.matches) : undefined
    return valuesAt(r.json, v.path).some((x) => {
      if (v.equals !== undefined) return x === v.equals || str(x) === str(v.equals)
      if (matches !== undefined) return matches.test(str(x), ctx.budget)
      return x !== undefined && x !== null && x !== false && x !== ''
    })
  }
  if (c.any) return c.any.some((x) => evalIn(x, ctx))
  if (c.all) return c.all.every((x) => evalIn(x, ctx))
  if (c.not) return !evalIn(c.not, ctx)
  return false
}

export const evaluateAll = (cs: Condition[], ctx: ConditionContext): boolean => {
  const c2 = { ...ctx, budget: ctx.budget ?? { left: CONDITION_BUDGET } }
  return cs.every((c) => evalIn(c, c2))
}

/** The findings that made a set of conditions true: the evidence a diagnosis cites. */
export function evidence(cs: Condition[], ctx: ConditionContext): Finding[] {
  const out: Finding[] = []
  const c2 = { ...ctx, budget: ctx.budget ?? { left: CONDITION_BUDGET } }
  const walk = (c: Condition): void => {
    if (c.finding) out.push(...poolOf(c.finding, c2).filter(findingMatcher(c.finding, c2.budget)))
    c.any?.filter((x) => evalIn(x, c2)).forEach(walk)
    c.all?.forEach(walk)
  }
  cs.forEach(walk)
  return out.filter((f, i) => out.findIndex((g) => g.step === f.step && g.name === f.name && g.detail === f.detail) === i)
}

/** One line for a step's findings: what did not pass. */
export function summarizeFindings(fs: Finding[]): string {
  const bad = fs.filter((f) => f.status === 'fail' || f.status === 'warn')
  const passed = fs.filter((f) => f.status === 'pass').length
  if (!fs.length) return ''
  if (!bad.length) return `${passed} passed`
  return `${bad.length} not passing (${passed} passed): ${bad.map((f) => `${f.status === 'warn' ? 'WARN ' : ''}${f.name}: ${f.detail}`).join('; ')}`
}
