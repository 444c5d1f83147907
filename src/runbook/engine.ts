// The runbook executor. Walks the steps — each kind in a module of its own under steps/ (checks run a
// read-only labctl probe with --json and keep its result, diagnoses branch on what the checks found and
// name a cause, actions run a labctl operation once confirmed, manual steps show instructions and wait
// for a confirmation) — and follows flow.ts after each one (a failed step stops the run unless its
// on_failure says otherwise). State is saved around every step (resume), and every step goes into the
// evidence transcript with secrets redacted. Ctrl-C (the signal) ends the run after the current step,
// as interrupted (exit 130). No oclif here: the command supplies the runner and the prompter.
import { userInfo } from 'node:os'
import { join } from 'node:path'
import { UsageError } from '../errors.js'
import type { ExecuteOptions, RunResult } from './engine-types.js'
import { exitCodeOf, FAILED, nextAfter } from './flow.js'
import type { Runbook } from './schema.js'
import { newRunId, runDir, saveState, type RunState, type RunStatus } from './state.js'
import { runStep, type StepEnv } from './steps/index.js'
import { prepareTranscriptDir, toTranscript, writeTranscript } from './transcript.js'

export type { EngineEvents, ExecuteOptions, Prompter, RunResult, Runner, RunnerResult } from './engine-types.js'

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

function safeUser(): string {
  try {
    return process.env.SUDO_USER || userInfo().username
  } catch {
    return process.env.USER ?? 'unknown'
  }
}

/** A new run's state, or the resumed run's, ready to continue. */
function startState(o: ExecuteOptions, now: () => Date, warnings: string[]): RunState {
  const rb = o.loaded.runbook
  const dryRun = Boolean(o.dryRun)
  if (o.resume) {
    const state = o.resume
    if (state.sha256 !== o.loaded.sha256) warnings.push(`the runbook file changed since run ${state.runId} started; resuming with the current version`)
    state.resumes += 1
    state.status = 'running'
    delete state.endedAt
    if (o.transcriptDir) state.transcript = { markdown: join(o.transcriptDir, `${state.runId}.md`), json: join(o.transcriptDir, `${state.runId}.json`) }
    return state
  }
  const runId = newRunId(rb.name, now())
  const tdir = o.transcriptDir ?? runDir(o.stateRoot, runId)
  return {
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

/** Where a resumed run starts; a step that no longer exists (the runbook was edited) is the operator's to decide. */
function startIndex(rb: Runbook, state: RunState, file: string): number {
  if (state.next === null) return rb.steps.length
  const idx = rb.steps.findIndex((s) => s.id === state.next)
  if (idx >= 0) return idx
  throw new UsageError(`run ${state.runId} stopped at step "${state.next}", which ${file} no longer has (the runbook was edited since)`, {
    code: 'RUNBOOK_CHANGED',
    suggestion: `start a new run: \`labctl runbook run ${rb.name}\` (or restore step "${state.next}" in ${file} and resume)`,
  })
}

export async function executeRunbook(o: ExecuteOptions): Promise<RunResult> {
  const rb = o.loaded.runbook
  const now = o.now ?? (() => new Date())
  const signal = o.signal ?? new AbortController().signal
  const dryRun = Boolean(o.dryRun)
  const warnings: string[] = []
  const started = performance.now()
  // Before anything runs: a transcript directory that cannot take the transcript is a usage error.
  if (o.transcriptDir) prepareTranscriptDir(o.transcriptDir)
  const state = startState(o, now, warnings)
  let idx = startIndex(rb, state, o.loaded.file)
  const env: StepEnv = {
    o,
    rb,
    state,
    vars: { ...(o.inventoryVars ?? {}), ...(o.host ? { host: o.host } : {}), ...(o.lab ? { lab: o.lab } : {}), ...(o.vars ?? {}) },
    secrets: o.secrets ?? [],
    signal,
    dryRun,
    now,
    sleep: o.sleep ?? defaultSleep,
  }
  const statePath = join(runDir(o.stateRoot, state.runId), 'state.json')
  const persist = (): void => {
    state.updatedAt = now().toISOString()
    saveState(o.stateRoot, state)
    writeTranscript(toTranscript(state, rb.causes), state.transcript)
  }

  const maxSteps = o.maxSteps ?? 200
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
    // state.next is this step already (saved after the previous one, or at the start): a crash now resumes here.
    state.next = step.id
    const run = await runStep(env, step, idx)
    // A step that failed because Ctrl-C arrived (a retry wait cut short, a killed command) was interrupted.
    if (signal.aborted && FAILED.includes(run.record.outcome) && run.record.outcome !== 'interrupted') {
      run.record.outcome = 'interrupted'
      run.record.summary = `interrupted (${run.record.summary})`
    }
    state.steps.push(run.record)
    o.events?.stepEnd?.(run.record)
    const next = nextAfter(step, run, dryRun)
    if ('stop' in next) {
      final = next.stop
      if (next.stop !== 'planned') stoppedAt = step.id
      persist()
      break
    }
    idx = next.goto === undefined ? idx + 1 : next.goto === 'end' ? rb.steps.length : rb.steps.findIndex((s) => s.id === next.goto)
    state.next = idx < rb.steps.length ? rb.steps[idx]!.id : null
    persist()
  }

  state.status = final ?? (dryRun ? 'planned' : 'completed')
  if (state.status === 'completed' || state.status === 'planned') state.next = null
  state.endedAt = now().toISOString()
  persist()
  const requiresPass = (id: string): boolean => rb.steps.some((s) => s.id === id && s.type === 'check' && s.require === 'pass')
  const verifiedStep = [...state.steps].reverse().find((s) => s.type === 'check' && requiresPass(s.id) && s.outcome !== 'planned' && s.outcome !== 'skipped')
  const t = toTranscript(state, rb.causes)
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
    exitCode: exitCodeOf(state.status, state.steps[state.steps.length - 1]),
    startedAt: state.startedAt,
    endedAt: state.endedAt,
    durationMs: Math.round(performance.now() - started),
    steps: state.steps,
    transcript: state.transcript,
    state: statePath,
    warnings,
  }
}
