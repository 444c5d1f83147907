// One state file per run, $XDG_STATE_HOME/labctl/runbooks/RUN-ID/state.json, rewritten (atomically)
// before and after every step: an interrupted or failed run can be resumed where it stopped.
import { randomBytes } from 'node:crypto'
import { mkdirSync, readdirSync } from 'node:fs'
import { readBoundedText } from '../fs/read-bounded.js'
import { join } from 'node:path'
import { errorMessage, LabctlError } from '../errors.js'
import { xdgDir } from '../paths.js'
import { writePrivateFile } from '../private-file.js'
import type { Finding, StepResult } from './conditions.js'
import type { StepType } from './schema.js'

export type StepOutcome =
  | 'passed'
  | 'problems'
  | 'failed'
  | 'diagnosed'
  | 'undiagnosed'
  | 'done'
  | 'planned'
  | 'skipped'
  | 'confirmed'
  | 'acknowledged'
  | 'declined'
  | 'interrupted'
  | 'needs-confirmation'

export type StepRecord = {
  id: string
  type: StepType
  title: string
  startedAt: string
  endedAt: string
  durationMs: number
  outcome: StepOutcome
  /** One line: what happened. */
  summary: string
  /** The labctl command as run (redacted). */
  command?: string
  exitCode?: number | null
  attempts?: number
  /** How the step was confirmed: operator, --yes, or not at all. */
  confirmedBy?: 'operator' | '--yes'
  cause?: string
  causeText?: string
  evidence?: Finding[]
  followUp?: string
  note?: string
  /** What the run did after this step failed: stop, continue, or goto STEP. */
  handler?: string
  instructions?: string
  /** The command's JSON result (redacted), or its text output when it printed no JSON. */
  output?: unknown
}

export type RunStatus = 'running' | 'completed' | 'failed' | 'stopped' | 'interrupted' | 'needs-confirmation' | 'planned'

export const RESUMABLE: readonly RunStatus[] = ['running', 'failed', 'stopped', 'interrupted', 'needs-confirmation']

export type RunOptions = { lab?: string; config?: string; host?: string; vars: Record<string, string>; dryRun: boolean }

export type RunState = {
  version: 1
  runId: string
  runbook: string
  title: string
  file: string
  sha256: string
  options: RunOptions
  operator: string
  status: RunStatus
  startedAt: string
  updatedAt: string
  endedAt?: string
  /** The step to run next: where a resume starts. null once the run ended. */
  next: string | null
  steps: StepRecord[]
  /** Results of finished check and action steps, for the conditions of later steps (redacted). */
  results: Record<string, StepResult>
  cause: string | null
  causes: string[]
  followUp?: string
  resumes: number
  transcript: { markdown: string; json: string }
  /** Set while a dry run walks past its first planned action: later checks are only planned. */
  planning?: boolean
}

export const runbooksStateDir = (env: NodeJS.ProcessEnv = process.env): string => join(xdgDir('state', env), 'runbooks')

export function newRunId(name: string, now: Date): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')
  return `${name}-${stamp}-${randomBytes(2).toString('hex')}`
}

export const runDir = (root: string, runId: string): string => join(root, runId)

/** Creates a directory labctl keeps run records in (0700); a LabctlError naming it when it cannot. */
export function ensurePrivateDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new LabctlError(`cannot create the directory ${dir}: ${code === 'EACCES' ? 'permission denied' : code === 'ENOSPC' ? 'no space left on the device' : code === 'EEXIST' || code === 'ENOTDIR' ? 'a part of the path is a file, not a directory' : (code ?? errorMessage(err))}`, {
      code: 'LOCAL_WRITE',
      suggestion: `check the path and its permissions (or set XDG_STATE_HOME to a writable directory), then rerun`,
    })
  }
}

/** Writes the run's state (0600, atomically); a LabctlError naming the file when it cannot. */
export function saveState(root: string, state: RunState): string {
  const dir = runDir(root, state.runId)
  ensurePrivateDir(dir)
  const path = join(dir, 'state.json')
  writePrivateFile(path, `${JSON.stringify(state, null, 2)}\n`)
  return path
}

export function readState(path: string): RunState | undefined {
  try {
    const s = JSON.parse(readBoundedText(path, 'state')) as RunState
    return s && s.version === 1 && typeof s.runId === 'string' ? s : undefined
  } catch {
    return undefined
  }
}

/** Every run recorded under the state dir, newest first. */
export function listRuns(root: string): RunState[] {
  let dirs: string[] = []
  try {
    dirs = readdirSync(root)
  } catch {
    return []
  }
  return dirs
    .map((d) => readState(join(root, d, 'state.json')))
    .filter((s): s is RunState => s !== undefined)
    .sort((a, b) => b.startedAt.localeCompare(a.startedAt))
}

/** The run `--resume` continues: the newest unfinished run of this runbook (or the given run id). */
export function findResumable(root: string, runbook: string, runId?: string): RunState {
  const runs = listRuns(root)
  if (runId) {
    const r = runs.find((s) => s.runId === runId)
    if (!r) throw new LabctlError(`no recorded run "${runId}" under ${root}`, { code: 'NO_RUN', suggestion: `see the run ids in ${root}` })
    if (r.runbook !== runbook) throw new LabctlError(`run ${runId} is of runbook "${r.runbook}", not "${runbook}"`, { code: 'NO_RUN', suggestion: `run \`labctl runbook run ${r.runbook} --resume --run-id ${runId}\`` })
    if (!RESUMABLE.includes(r.status)) throw new LabctlError(`run ${runId} is ${r.status}: nothing to resume`, { code: 'NOTHING_TO_RESUME', suggestion: `start a new run: \`labctl runbook run ${runbook}\`` })
    return r
  }
  const r = runs.find((s) => s.runbook === runbook && !s.options.dryRun)
  if (!r || !RESUMABLE.includes(r.status)) {
    throw new LabctlError(`no unfinished run of "${runbook}" to resume${r ? ` (the last one, ${r.runId}, is ${r.status})` : ''}`, {
      code: 'NOTHING_TO_RESUME',
      suggestion: `start a new run: \`labctl runbook run ${runbook}\``,
    })
  }
  return r
}
