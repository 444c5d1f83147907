// Runs one step of whichever kind, timing it and closing its record (summary redacted). A step that
// throws becomes a failed step with the reason — or an interrupted one after Ctrl-C — never a crash.
import { errorMessage, oneLine } from '../../errors.js'
import { CONDITION_BUDGET } from '../conditions.js'
import { BudgetExceededError, PatternError } from '../pattern.js'
import type { Step } from '../schema.js'
import { runAction } from './action.js'
import { runCheck } from './check.js'
import { runDiagnosis } from './diagnosis.js'
import { redact, titleOf, type Finish, type StepEnv, type StepRun } from './env.js'
import { runManual } from './manual.js'

export type { StepEnv, StepRun } from './env.js'

function whyFailed(err: unknown): string {
  if (err instanceof BudgetExceededError) return `its conditions needed more than ${CONDITION_BUDGET} matching steps on this output: make the patterns more specific`
  if (err instanceof PatternError) return `a pattern cannot be used: ${err.message} (at character ${err.index + 1}); \`labctl runbook show\` reports where`
  return oneLine(errorMessage(err))
}

export async function runStep(env: StepEnv, step: Step, index: number): Promise<StepRun> {
  const t0 = env.now()
  const p0 = performance.now()
  const base = { id: step.id, type: step.type, title: titleOf(env, step), startedAt: t0.toISOString() }
  const finish: Finish = (r) => ({ ...base, endedAt: env.now().toISOString(), durationMs: Math.round(performance.now() - p0), ...r, summary: redact(env, r.summary) })
  try {
    switch (step.type) {
      case 'check':
        return { record: await runCheck(env, step, index, finish) }
      case 'action':
        return { record: await runAction(env, step, index, finish) }
      case 'manual':
        return { record: await runManual(env, step, index, finish) }
      case 'diagnosis':
        return runDiagnosis(env, step, index, finish)
    }
  } catch (err) {
    if (env.signal.aborted) return { record: finish({ outcome: 'interrupted', summary: 'interrupted' }) }
    return { record: finish({ outcome: 'failed', summary: `could not run the step: ${whyFailed(err)}` }) }
  }
}
