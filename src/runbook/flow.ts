// Where a run goes after a step: on success its `next:` (or the diagnosis case's `goto:`, or simply
// the next step); on failure what its `on_failure:` says — stop (the default), continue, or goto a
// step. An interrupted step or one that needs a confirmation always stops the run (resumable). And
// the exit code a run ends with.
import type { Step } from './schema.js'
import type { RunStatus, StepOutcome, StepRecord } from './state.js'
import type { StepRun } from './steps/index.js'

export const FAILED: readonly StepOutcome[] = ['failed', 'declined', 'interrupted', 'needs-confirmation']

export type Next =
  /** The run ends here with this status. */
  | { stop: RunStatus }
  /** Go to this step id, `end`, or (undefined) the step after this one. */
  | { goto: string | undefined }

/** Decides where to go after a step; records the failure handler taken on the step's record. */
export function nextAfter(step: Step, run: StepRun, dryRun: boolean): Next {
  const record = run.record
  if (FAILED.includes(record.outcome)) {
    if (record.outcome === 'interrupted' || record.outcome === 'needs-confirmation') return { stop: record.outcome }
    const handler = step.on_failure ?? 'stop'
    if (handler === 'stop') {
      record.handler = 'stopped the run'
      return { stop: record.outcome === 'declined' ? 'stopped' : 'failed' }
    }
    if (handler === 'continue') {
      record.handler = 'continued with the next step'
      return { goto: undefined }
    }
    record.handler = `went to ${handler.goto}`
    return { goto: handler.goto }
  }
  // After a planned action the outcome of this diagnosis is unknown: the plan ends here.
  if (dryRun && step.type === 'diagnosis' && record.outcome === 'planned') return { stop: 'planned' }
  if (record.outcome === 'diagnosed' || record.outcome === 'undiagnosed') return { goto: run.goto ?? step.next }
  return { goto: step.next }
}

/** 0 completed or planned; 3 a required check still fails; 2 a confirmation was needed; 130 interrupted; else 1. */
export function exitCodeOf(status: RunStatus, last: StepRecord | undefined): number {
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
