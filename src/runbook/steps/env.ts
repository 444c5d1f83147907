// What every step kind works with: the run (options, state, filled-in variables, redaction, the abort
// signal) and the small things they share — building a labctl argv, running it, describing a failure,
// keeping a result for later conditions, asking for a confirmation, and closing a step's record.
import { oneLine } from '../../errors.js'
import { fillTemplate, missingVars, splitCommand } from '../argv.js'
import { findingsOf, type StepResult } from '../conditions.js'
import type { ExecuteOptions, RunnerResult } from '../engine-types.js'
import { redactJson, redactText } from '../redact.js'
import type { ActionStep, CheckStep, Runbook, Step } from '../schema.js'
import type { RunState, StepOutcome, StepRecord } from '../state.js'

/** One run, as the step kinds see it. Built once per run by the executor; `state` is the run's state. */
export type StepEnv = {
  o: ExecuteOptions
  rb: Runbook
  state: RunState
  vars: Record<string, string>
  secrets: readonly string[]
  signal: AbortSignal
  dryRun: boolean
  now: () => Date
  sleep: (ms: number, signal: AbortSignal) => Promise<void>
}

/** The fields a step kind decides; the executor adds id, type, title and the times. */
export type StepFields = Omit<StepRecord, 'id' | 'type' | 'title' | 'startedAt' | 'endedAt' | 'durationMs'>
export type Finish = (r: StepFields) => StepRecord

/** A finished step, and where a diagnosis case said to go next. */
export type StepRun = { record: StepRecord; goto?: string | undefined }

export type Invoked = RunnerResult & { json: unknown }

export const DEFAULT_TIMEOUT_S = { check: 300, action: 1800 }

export const redact = (env: StepEnv, s: string): string => redactText(s, env.secrets)
export const titleOf = (env: StepEnv, step: Step): string => fillTemplate(step.title, env.vars)

function parseJson(text: string): unknown {
  const t = text.trim()
  if (!t.startsWith('{') && !t.startsWith('[')) return undefined
  try {
    return JSON.parse(t)
  } catch {
    return undefined
  }
}

const lastLines = (text: string, n = 20): string => text.trim().split('\n').slice(-n).join('\n')

/** The runbook author's argv with its {{placeholders}} filled (no labctl flags added), or what is missing. */
export function filledArgv(env: StepEnv, step: CheckStep | ActionStep): { argv: string[] } | { missing: string[] } {
  const raw = splitCommand(step.run)
  const missing = [...new Set(raw.flatMap((a) => missingVars(a, env.vars)))]
  if (missing.length) return { missing }
  return { argv: raw.map((a) => fillTemplate(a, env.vars)) }
}

/** Adds what the run passes to every labctl step: --json, --config or --lab, --host, and `extra`. */
export function withRunFlags(env: StepEnv, step: CheckStep | ActionStep, filled: string[], extra: string[]): string[] {
  const { o } = env
  // labctl's own flags go before a `--` (after it, everything belongs to the wrapped command).
  const dd = filled.indexOf('--')
  const argv = dd < 0 ? [...filled] : filled.slice(0, dd)
  const rest = dd < 0 ? [] : filled.slice(dd)
  const has = (f: string): boolean => argv.some((a) => a === f || a.startsWith(`${f}=`))
  if (!has('--json')) argv.push('--json')
  if (o.config && !has('--config')) argv.push('--config', o.config)
  else if (o.lab && !has('--lab') && !has('--config')) argv.push('--lab', o.lab)
  if (step.host && o.host && !has('--host')) argv.push('--host', o.host)
  for (const e of extra) if (!has(e)) argv.push(e)
  return [...argv, ...rest]
}

export const skippedFor = (missing: string[]): StepFields => ({ outcome: 'skipped', summary: `skipped: needs ${missing.map((m) => `--var ${m}=…`).join(' ')}` })

export async function invoke(env: StepEnv, argv: string[], timeoutS: number): Promise<Invoked> {
  const r = await env.o.runner(argv, { signal: env.signal, timeoutMs: timeoutS * 1000 })
  return { ...r, json: parseJson(r.stdout) }
}

export const wasInterrupted = (env: StepEnv, r: RunnerResult): boolean => r.interrupted || env.signal.aborted || r.exitCode === 130

export function describeFailure(r: Invoked): string {
  const envelope = r.json as { status?: string; error?: { message?: string; suggestion?: string } } | undefined
  if (r.timedOut) return 'timed out'
  if (r.exitCode === 127) return `labctl does not have this command (exit 127)${r.stderr ? `: ${oneLine(lastLines(r.stderr, 3), 200)}` : ''}`
  if (envelope?.status === 'error' && envelope.error?.message) return `${envelope.error.message}${envelope.error.suggestion ? ` (next: ${envelope.error.suggestion})` : ''}`
  return `exit ${r.exitCode ?? 'none'}${r.stderr ? `: ${oneLine(lastLines(r.stderr, 3), 300)}` : ''}`
}

/** What goes into the record: the JSON (redacted), else the text output (redacted). */
export function outputOf(env: StepEnv, r: Invoked): unknown {
  return r.json !== undefined ? redactJson(r.json, env.secrets) : redact(env, [r.stdout.trim(), r.stderr.trim()].filter(Boolean).join('\n--- stderr ---\n')) || undefined
}

/** Keeps a check's or action's result for the conditions of later steps. */
export function remember(env: StepEnv, step: Step, r: Invoked, outcome: StepOutcome): StepResult {
  const json = r.json !== undefined ? redactJson(r.json, env.secrets) : undefined
  const res: StepResult = { step: step.id, type: step.type, exitCode: r.exitCode, outcome, ...(json !== undefined ? { json } : {}), findings: findingsOf(step.id, json) }
  env.state.results[step.id] = res
  return res
}

export type Confirmation = { ok: true; by: 'operator' | '--yes' } | { ok: false; outcome: StepOutcome; why: string }

/** --yes, else the operator on the prompter, else "needs a confirmation". */
export async function confirmStep(env: StepEnv, question: string, shown: string | undefined): Promise<Confirmation> {
  const { o, signal } = env
  if (o.yes) return { ok: true, by: '--yes' }
  if (!o.prompter) return { ok: false, outcome: 'needs-confirmation', why: 'confirmation needed: rerun with --yes, or from a terminal to answer' }
  if (shown) o.prompter.show(shown)
  const yes = await o.prompter.confirm(question, signal)
  if (signal.aborted) return { ok: false, outcome: 'interrupted', why: 'interrupted' }
  return yes ? { ok: true, by: 'operator' } : { ok: false, outcome: 'declined', why: 'declined by the operator' }
}
