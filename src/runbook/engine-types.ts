// The executor's contract with its caller (the `runbook run` command, the tests): what it is given —
// a runner for labctl, a prompter, the lab selection — and what it returns.
import type { LoadedRunbook, Step } from './schema.js'
import type { RunState, RunStatus, StepRecord } from './state.js'

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
