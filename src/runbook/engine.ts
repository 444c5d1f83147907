// The runbook executor. Walks the steps: checks run a labctl probe with --json and keep its result,
// diagnoses branch on what the checks found and name a cause, actions run a labctl operation once
// confirmed, manual steps show instructions and wait for a confirmation. A failed step stops the run
// unless its on_failure says otherwise. State is saved around every step (resume), and every step goes
// into the evidence transcript with secrets redacted. No oclif here: the command supplies the prompter.
import { userInfo } from 'node:os'
import { join } from 'node:path'
import { errorMessage, oneLine } from '../errors.js'
import { fillTemplate, missingVars, showCommand, splitCommand } from './argv.js'
import { evaluateAll, evidence, findingsOf, summarizeFindings, type StepResult } from './conditions.js'
import { redactJson, redactText } from './redact.js'
import type { ActionStep, CheckStep, DiagnosisStep, LoadedRunbook, ManualStep, Step } from './schema.js'
import { newRunId, runDir, saveState, type RunState, type RunStatus, type StepOutcome, type StepRecord } from './state.js'
import { toTranscript, writeTranscript, type Transcript } from './transcript.js'

export type RunnerResult = { exitCode: number | null; stdout: string; stderr: string; interrupted: boolean; timedOut: boolean }
/** Runs `labctl ARGV…` and returns what it printed. The executor never builds a shell command. */
export type Runner = (argv: string[], opts: { signal: AbortSignal; timeoutMs: number }) => Promise<RunnerResult>

export type Prompter = {
  /** Show a manual step's instructions (or an action's plan) before the question. */
  show(text: string): void
  confirm(message: string, signal: AbortSignal): Promise<boolean>
}

export type EngineEvents = {
  stepStart?: (step: Step, index: number, detail: string, title: string) => void
  stepEnd?: (record: StepRecord) => void
  note?: (message: string) => void
}

export type ExecuteOptions = {
  loaded: LoadedRunbook
  runner: Runner
  /** Passed through to every labctl step. */
  lab?: string | undefined
  config?: string | undefined
  host?: string | undefined
  /** --var KEY=VALUE, plus what the inventory provides ({{publicUrl}}, {{serviceName}}, …). */
  vars?: Record<string, string>
  inventoryVars?: Record<string, string>
  /** Values to redact from everything stored or printed. */
  secrets?: readonly string[]
  yes?: boolean
  /** undefined: no terminal to ask on (confirmations need --yes). */
  prompter?: Prompter | undefined
  dryRun?: boolean
  /** $XDG_STATE_HOME/labctl/runbooks */
  stateRoot: string
  /** Where to write the transcript (default: the run's state dir). */
  transcriptDir?: string | undefined
  resume?: RunState | undefined
  signal?: AbortSignal
  events?: EngineEvents
  now?: () => Date
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>
  /** A guard against goto loops. */
  maxSteps?: number
  operator?: string
}

export type RunResult = {
  runbook: string
  title: string
  runId: string
  status: RunStatus
  /** The diagnosed cause (the last diagnosis that named one). */
  cause: { id: string; description: string } | null
  causes: string[]
  followUp: string | null
  /** Whether the last check step run with `require: pass` passed (null: there was none). */
  verified: boolean | null
  dryRun: boolean
  resumed: boolean
  /** The step the run stopped at, when it did not complete. */
  stoppedAt: string | null
  exitCode: number
  startedAt: string
  endedAt: string
  durationMs: number
  steps: StepRecord[]
  transcript: { markdown: string; json: string }
  state: string
  warnings: string[]
}

const FAILED: readonly StepOutcome[] = ['failed', 'declined', 'interrupted', 'needs-confirmation']
const DEFAULT_TIMEOUT_S = { check: 300, action: 1800 }

const defaultSleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const t = setTimeout(done, ms)
    function done(): void {
      clearTimeout(t)
      signal.removeEventListener('abort', done)
      resolve()
    }
    signal.addEventListener('abort', done, { once: true })
  })

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

export async function executeRunbook(o: ExecuteOptions): Promise<RunResult> {
  const rb = o.loaded.runbook
  const now = o.now ?? (() => new Date())
  const sleep = o.sleep ?? defaultSleep
  const signal = o.signal ?? new AbortController().signal
  const secrets = o.secrets ?? []
  const dryRun = Boolean(o.dryRun)
  const warnings: string[] = []
  const red = (s: string): string => redactText(s, secrets)
  const vars: Record<string, string> = { ...(o.inventoryVars ?? {}), ...(o.host ? { host: o.host } : {}), ...(o.lab ? { lab: o.lab } : {}), ...(o.vars ?? {}) }
  const started = performance.now()

  let state: RunState
  if (o.resume) {
    state = o.resume
    if (state.sha256 !== o.loaded.sha256) warnings.push(`the runbook file changed since run ${state.runId} started; resuming with the current version`)
    state.resumes += 1
    state.status = 'running'
    delete state.endedAt
  } else {
    const runId = newRunId(rb.name, now())
    const tdir = o.transcriptDir ?? runDir(o.stateRoot, runId)
    state = {
      version: 1,
      runId,
      runbook: rb.name,
      title: rb.title,
      file: o.loaded.file,
      sha256: o.loaded.sha256,
      options: { ...(o.lab ? { lab: o.lab } : {}), ...(o.config ? { config: o.config } : {}), ...(o.host ? { host: o.host } : {}), vars: o.vars ?? {}, dryRun },
      operator: o.operator ?? safeUser(),
      status: 'running',
      startedAt: now().toISOString(),
      updatedAt: now().toISOString(),
      next: rb.steps[0]!.id,
      steps: [],
      results: {},
      cause: null,
      causes: [],
      resumes: 0,
      transcript: { markdown: join(tdir, o.transcriptDir ? `${runId}.md` : 'transcript.md'), json: join(tdir, o.transcriptDir ? `${runId}.json` : 'transcript.json') },
    }
  }
  if (o.resume && o.transcriptDir) {
    state.transcript = { markdown: join(o.transcriptDir, `${state.runId}.md`), json: join(o.transcriptDir, `${state.runId}.json`) }
  }
  const statePath = join(runDir(o.stateRoot, state.runId), 'state.json')
  const persist = (): void => {
    state.updatedAt = now().toISOString()
    saveState(o.stateRoot, state)
    writeTranscript(toTranscript(state, rb.causes), state.transcript)
  }

  const indexOf = (id: string): number => rb.steps.findIndex((s) => s.id === id)
  let idx = state.next === null ? rb.steps.length : indexOf(state.next)
  if (idx < 0) throw new Error(`step "${state.next}" of run ${state.runId} no longer exists in ${o.loaded.file}: start a new run`)
  const maxSteps = o.maxSteps ?? 200
  /** Where the case a diagnosis matched goes next. */
  const caseGoto = new WeakMap<StepRecord, string | undefined>()
  let count = 0
  let stoppedAt: string | null = null
  let final: RunStatus | undefined
  persist()

  while (idx < rb.steps.length) {
    const step = rb.steps[idx]!
    if (signal.aborted) {
      final = 'interrupted'
      stoppedAt = step.id
      break
    }
    if (++count > maxSteps) {
      warnings.push(`stopped after ${maxSteps} steps: the runbook's goto's loop`)
      final = 'failed'
      stoppedAt = step.id
      break
    }
    state.next = step.id
    state.status = 'running'
    persist()
    const record = await runStep(step, idx)
    state.steps.push(record)
    o.events?.stepEnd?.(record)

    let target: string | undefined
    if (FAILED.includes(record.outcome)) {
      if (record.outcome === 'interrupted' || record.outcome === 'needs-confirmation') {
        final = record.outcome
        stoppedAt = step.id
        persist()
        break
      }
      const handler = step.on_failure ?? 'stop'
      if (handler === 'stop') {
        record.handler = 'stopped the run'
        final = record.outcome === 'declined' ? 'stopped' : 'failed'
        stoppedAt = step.id
        persist()
        break
      }
      if (handler === 'continue') record.handler = 'continued with the next step'
      else {
        target = handler.goto
        record.handler = `went to ${handler.goto}`
      }
    } else {
      if (dryRun && step.type === 'diagnosis' && record.outcome === 'planned') {
        // After a planned action the outcome of this diagnosis is unknown: the plan ends here.
        final = 'planned'
        break
      }
      target = record.outcome === 'diagnosed' || record.outcome === 'undiagnosed' ? (gotoOf(step, record) ?? step.next) : step.next
    }
    idx = target === undefined ? idx + 1 : target === 'end' ? rb.steps.length : indexOf(target)
    state.next = idx < rb.steps.length ? rb.steps[idx]!.id : null
    persist()
  }

  state.status = final ?? (dryRun ? 'planned' : 'completed')
  if (state.status === 'completed' || state.status === 'planned') state.next = null
  state.endedAt = now().toISOString()
  persist()
  const verifiedStep = [...state.steps].reverse().find((s) => s.type === 'check' && requiresPass(s.id) && s.outcome !== 'planned' && s.outcome !== 'skipped')
  const exitCode = exitCodeOf(state.status, state.steps[state.steps.length - 1])
  const t: Transcript = toTranscript(state, rb.causes)
  return {
    runbook: rb.name,
    title: rb.title,
    runId: state.runId,
    status: state.status,
    cause: t.cause,
    causes: state.causes,
    followUp: state.followUp ?? null,
    verified: verifiedStep ? verifiedStep.outcome === 'passed' : null,
    dryRun,
    resumed: state.resumes > 0,
    stoppedAt,
    exitCode,
    startedAt: state.startedAt,
    endedAt: state.endedAt,
    durationMs: Math.round(performance.now() - started),
    steps: state.steps,
    transcript: state.transcript,
    state: statePath,
    warnings,
  }

  function requiresPass(id: string): boolean {
    const s = rb.steps.find((x) => x.id === id)
    return s?.type === 'check' && s.require === 'pass'
  }

  function gotoOf(step: Step, record: StepRecord): string | undefined {
    if (step.type !== 'diagnosis') return undefined
    return caseGoto.get(record)
  }

  async function runStep(step: Step, index: number): Promise<StepRecord> {
    const t0 = now()
    const p0 = performance.now()
    const base = { id: step.id, type: step.type, title: fillTemplate(step.title, vars), startedAt: t0.toISOString() }
    const finish = (r: Omit<StepRecord, 'id' | 'type' | 'title' | 'startedAt' | 'endedAt' | 'durationMs'>): StepRecord => ({
      ...base,
      endedAt: now().toISOString(),
      durationMs: Math.round(performance.now() - p0),
      ...r,
      summary: red(r.summary),
    })
    try {
      switch (step.type) {
        case 'check':
          return await runCheck(step, index, finish)
        case 'action':
          return await runAction(step, index, finish)
        case 'manual':
          return await runManual(step, index, finish)
        case 'diagnosis':
          return runDiagnosis(step, index, finish)
      }
    } catch (err) {
      if (signal.aborted) return finish({ outcome: 'interrupted', summary: 'interrupted' })
      return finish({ outcome: 'failed', summary: `could not run the step: ${oneLine(errorMessage(err))}` })
    }
  }

  type Finish = (r: Omit<StepRecord, 'id' | 'type' | 'title' | 'startedAt' | 'endedAt' | 'durationMs'>) => StepRecord

  /** The argv for a check or action step, or why it cannot run (a {{var}} without a value). */
  function argvOf(step: CheckStep | ActionStep, extra: string[]): { argv: string[] } | { missing: string[] } {
    const raw = splitCommand(step.run)
    const missing = [...new Set(raw.flatMap((a) => missingVars(a, vars)))]
    if (missing.length) return { missing }
    const filled = raw.map((a) => fillTemplate(a, vars))
    // labctl's own flags go before a `--` (after it, everything belongs to the wrapped command).
    const dd = filled.indexOf('--')
    const argv = dd < 0 ? filled : filled.slice(0, dd)
    const rest = dd < 0 ? [] : filled.slice(dd)
    const has = (f: string): boolean => argv.some((a) => a === f || a.startsWith(`${f}=`))
    if (!has('--json')) argv.push('--json')
    if (o.config && !has('--config')) argv.push('--config', o.config)
    else if (o.lab && !has('--lab') && !has('--config')) argv.push('--lab', o.lab)
    if (step.host && o.host && !has('--host')) argv.push('--host', o.host)
    for (const e of extra) if (!has(e)) argv.push(e)
    return { argv: [...argv, ...rest] }
  }

  async function invoke(argv: string[], timeoutS: number): Promise<RunnerResult & { json: unknown }> {
    const r = await o.runner(argv, { signal, timeoutMs: timeoutS * 1000 })
    return { ...r, json: parseJson(r.stdout) }
  }

  function describeFailure(r: RunnerResult & { json: unknown }): string {
    const env = r.json as { status?: string; error?: { message?: string; suggestion?: string } } | undefined
    if (r.timedOut) return 'timed out'
    if (r.exitCode === 127) return `labctl does not have this command (exit 127)${r.stderr ? `: ${oneLine(lastLines(r.stderr, 3), 200)}` : ''}`
    if (env?.status === 'error' && env.error?.message) return `${env.error.message}${env.error.suggestion ? ` (next: ${env.error.suggestion})` : ''}`
    return `exit ${r.exitCode ?? 'none'}${r.stderr ? `: ${oneLine(lastLines(r.stderr, 3), 300)}` : ''}`
  }

  function outputOf(r: RunnerResult & { json: unknown }): unknown {
    return r.json !== undefined ? redactJson(r.json, secrets) : red([r.stdout.trim(), r.stderr.trim()].filter(Boolean).join('\n--- stderr ---\n')) || undefined
  }

  function remember(step: Step, r: RunnerResult & { json: unknown }, outcome: StepOutcome): StepResult {
    const json = r.json !== undefined ? redactJson(r.json, secrets) : undefined
    const res: StepResult = { step: step.id, type: step.type, exitCode: r.exitCode, outcome, ...(json !== undefined ? { json } : {}), findings: findingsOf(step.id, json) }
    state.results[step.id] = res
    return res
  }

  async function runCheck(step: CheckStep, index: number, finish: Finish): Promise<StepRecord> {
    const a = argvOf(step, [])
    if ('missing' in a) {
      o.events?.stepStart?.(step, index, '', fillTemplate(step.title, vars))
      return finish({ outcome: 'skipped', summary: `skipped: needs ${a.missing.map((m) => `--var ${m}=…`).join(' ')}` })
    }
    const command = red(showCommand(a.argv))
    if (dryRun && state.planning) {
      o.events?.stepStart?.(step, index, `would run: labctl ${command}`, fillTemplate(step.title, vars))
      return finish({ outcome: 'planned', command, summary: 'planned: runs after the planned action' })
    }
    o.events?.stepStart?.(step, index, `labctl ${command}`, fillTemplate(step.title, vars))
    const deadline = Date.now() + (step.retry?.for ?? 0) * 1000
    let attempts = 0
    for (;;) {
      attempts += 1
      const r = await invoke(a.argv, step.timeout ?? DEFAULT_TIMEOUT_S.check)
      let outcome: StepOutcome
      if (r.interrupted || signal.aborted || r.exitCode === 130) outcome = 'interrupted'
      else if (r.exitCode === 0) outcome = 'passed'
      else if (r.exitCode === 3 && r.json !== undefined) outcome = step.require === 'pass' ? 'failed' : 'problems'
      else outcome = 'failed'
      const res = remember(step, r, outcome)
      const retryable = outcome === 'failed' && step.retry && Date.now() + (step.retry.every ?? 2) * 1000 <= deadline && (!step.retry.while || evaluateAll(step.retry.while, { results: state.results, self: step.id }))
      if (retryable) {
        o.events?.note?.(`  ${step.id}: not passing yet (${oneLine(red(summarizeFindings(res.findings) || describeFailure(r)), 160)}); retrying in ${step.retry!.every ?? 2} s`)
        await sleep((step.retry!.every ?? 2) * 1000, signal)
        if (!signal.aborted) continue
      }
      const findingsLine = summarizeFindings(res.findings)
      const summary =
        outcome === 'interrupted'
          ? 'interrupted'
          : r.exitCode === 0 || r.exitCode === 3
            ? findingsLine || (r.exitCode === 0 ? 'passed' : 'checks failed')
            : describeFailure(r)
      return finish({ outcome, command, exitCode: r.exitCode, ...(attempts > 1 ? { attempts } : {}), summary, output: outputOf(r) })
    }
  }

  async function confirmStep(question: string, shown: string | undefined): Promise<{ ok: true; by: 'operator' | '--yes' } | { ok: false; outcome: StepOutcome; why: string }> {
    if (o.yes) return { ok: true, by: '--yes' }
    if (!o.prompter) return { ok: false, outcome: 'needs-confirmation', why: 'confirmation needed: rerun with --yes, or from a terminal to answer' }
    if (shown) o.prompter.show(shown)
    const yes = await o.prompter.confirm(question, signal)
    if (signal.aborted) return { ok: false, outcome: 'interrupted', why: 'interrupted' }
    return yes ? { ok: true, by: 'operator' } : { ok: false, outcome: 'declined', why: 'declined by the operator' }
  }

  async function runAction(step: ActionStep, index: number, finish: Finish): Promise<StepRecord> {
    const a = argvOf(step, ['--yes'])
    if ('missing' in a) {
      o.events?.stepStart?.(step, index, '', fillTemplate(step.title, vars))
      return finish({ outcome: 'skipped', summary: `skipped: needs ${a.missing.map((m) => `--var ${m}=…`).join(' ')}` })
    }
    const shown = showCommand(a.argv.filter((x) => x !== '--json'))
    const command = red(showCommand(a.argv))
    if (dryRun) {
      state.planning = true
      o.events?.stepStart?.(step, index, `would run: labctl ${shown}`, fillTemplate(step.title, vars))
      return finish({ outcome: 'planned', command, summary: `planned: labctl ${shown}` })
    }
    o.events?.stepStart?.(step, index, `labctl ${shown}`, fillTemplate(step.title, vars))
    const c = await confirmStep(fillTemplate(step.confirm ?? `Run \`labctl ${shown}\`?`, vars), `${step.title}\n  will run: labctl ${shown}`)
    if (!c.ok) return finish({ outcome: c.outcome, command, summary: c.why })
    const r = await invoke(a.argv, step.timeout ?? DEFAULT_TIMEOUT_S.action)
    const outcome: StepOutcome = r.interrupted || signal.aborted || r.exitCode === 130 ? 'interrupted' : r.exitCode === 0 ? 'done' : 'failed'
    remember(step, r, outcome)
    const summary = outcome === 'done' ? `done: labctl ${shown}` : outcome === 'interrupted' ? 'interrupted' : describeFailure(r)
    return finish({ outcome, command, exitCode: r.exitCode, confirmedBy: c.by, summary, output: outputOf(r) })
  }

  async function runManual(step: ManualStep, index: number, finish: Finish): Promise<StepRecord> {
    const instructions = red(fillTemplate(step.instructions, vars))
    o.events?.stepStart?.(step, index, 'manual step', fillTemplate(step.title, vars))
    if (dryRun) return finish({ outcome: 'planned', summary: 'planned: manual step', instructions })
    const c = await confirmStep(fillTemplate(step.confirm, vars), instructions)
    if (!c.ok) return finish({ outcome: c.outcome, summary: c.why, instructions })
    return c.by === '--yes'
      ? finish({ outcome: 'acknowledged', confirmedBy: '--yes', summary: 'acknowledged (--yes): the instructions were recorded, not confirmed by a person', instructions })
      : finish({ outcome: 'confirmed', confirmedBy: 'operator', summary: `confirmed: ${fillTemplate(step.confirm, vars)}`, instructions })
  }

  function setCause(cause: string): void {
    state.cause = cause
    if (!state.causes.includes(cause)) state.causes.push(cause)
  }

  function runDiagnosis(step: DiagnosisStep, index: number, finish: Finish): StepRecord {
    o.events?.stepStart?.(step, index, 'diagnosis', fillTemplate(step.title, vars))
    if (dryRun && state.planning) return finish({ outcome: 'planned', summary: 'planned: depends on the outcome of the planned action; the plan ends here' })
    const ctx = { results: state.results }
    const done = (r: StepRecord, goto: string | undefined): StepRecord => {
      caseGoto.set(r, goto)
      return r
    }
    for (const c of step.cases) {
      if (!evaluateAll(c.when, ctx)) continue
      setCause(c.cause)
      if (c.follow_up) state.followUp = c.follow_up
      const ev = evidence(c.when, ctx).map((f) => ({ ...f, detail: red(f.detail) }))
      return done(finish({
        outcome: 'diagnosed',
        cause: c.cause,
        causeText: rb.causes[c.cause]!,
        summary: `cause: ${c.cause} — ${rb.causes[c.cause]}`,
        ...(ev.length ? { evidence: ev } : {}),
        ...(c.follow_up ? { followUp: c.follow_up } : {}),
        ...(c.note ? { note: fillTemplate(c.note, vars) } : {}),
      }), c.goto)
    }
    if (step.otherwise) {
      const c = step.otherwise
      if (c.follow_up) state.followUp = c.follow_up
      const extra = { ...(c.follow_up ? { followUp: c.follow_up } : {}), ...(c.note ? { note: fillTemplate(c.note, vars) } : {}) }
      if (c.cause === undefined) {
        return done(finish({ outcome: 'undiagnosed', summary: `no case matched${state.cause ? `; the cause stays ${state.cause}` : ''}${c.note ? ` — ${fillTemplate(c.note, vars)}` : ''}`, ...extra }), c.goto)
      }
      setCause(c.cause)
      return done(finish({ outcome: 'undiagnosed', cause: c.cause, causeText: rb.causes[c.cause]!, summary: `no case matched: ${c.cause} — ${rb.causes[c.cause]}`, ...extra }), c.goto)
    }
    return finish({ outcome: 'undiagnosed', summary: 'no case matched; continuing with the next step' })
  }
}

/** 0 completed or planned; 3 a required check still fails; 2 a confirmation was needed; 130 interrupted; else 1. */
function exitCodeOf(status: RunStatus, last: StepRecord | undefined): number {
  switch (status) {
    case 'completed':
    case 'planned':
      return 0
    case 'interrupted':
      return 130
    case 'needs-confirmation':
      return 2
    case 'failed':
      return last?.type === 'check' && last.exitCode === 3 ? 3 : 1
    default:
      return 1
  }
}

function safeUser(): string {
  try {
    return process.env.SUDO_USER || userInfo().username
  } catch {
    return process.env.USER ?? 'unknown'
  }
}
