// A check step: runs a read-only labctl probe with --json and keeps its findings for the diagnoses.
// Read-only by construction: the parser refuses a check whose command may change state, and the command
// line is checked again here once its {{placeholders}} are filled — a refused check runs nothing (this is
// also what makes --dry-run safe: checks are the only steps a dry run executes). A check may be retried
// while it fails (`retry:`); the wait between attempts ends at once on Ctrl-C.
import { oneLine } from '../../errors.js'
import { showCommand } from '../argv.js'
import { evaluateAll, summarizeFindings } from '../conditions.js'
import { readOnlyProblem } from '../readonly.js'
import type { CheckStep } from '../schema.js'
import type { StepOutcome, StepRecord } from '../state.js'
import { DEFAULT_TIMEOUT_S, describeFailure, filledArgv, invoke, outputOf, redact, remember, skippedFor, titleOf, wasInterrupted, withRunFlags, type Finish, type StepEnv } from './env.js'

export async function runCheck(env: StepEnv, step: CheckStep, index: number, finish: Finish): Promise<StepRecord> {
  const { o, state, signal } = env
  const title = titleOf(env, step)
  const filled = filledArgv(env, step)
  if ('missing' in filled) {
    o.events?.stepStart?.(step, index, '', title)
    return finish(skippedFor(filled.missing))
  }
  const argv = withRunFlags(env, step, filled.argv, [])
  const command = redact(env, showCommand(argv))
  const refused = readOnlyProblem(filled.argv, true)
  if (refused) {
    o.events?.stepStart?.(step, index, `refused: labctl ${command}`, title)
    return finish({ outcome: 'failed', command, summary: `refused to run a check that is not read-only: ${refused}` })
  }
  if (env.dryRun && state.planning) {
    o.events?.stepStart?.(step, index, `would run: labctl ${command}`, title)
    return finish({ outcome: 'planned', command, summary: 'planned: runs after the planned action' })
  }
  o.events?.stepStart?.(step, index, `labctl ${command}`, title)
  const every = step.retry?.every ?? 2
  const deadline = Date.now() + (step.retry?.for ?? 0) * 1000
  // Bounded: each attempt waits `every` seconds and attempts stop at the deadline.
  for (let attempts = 1; ; attempts++) {
    const r = await invoke(env, argv, step.timeout ?? DEFAULT_TIMEOUT_S.check)
    let outcome: StepOutcome
    if (wasInterrupted(env, r)) outcome = 'interrupted'
    else if (r.exitCode === 0) outcome = 'passed'
    else if (r.exitCode === 3 && r.json !== undefined) outcome = step.require === 'pass' ? 'failed' : 'problems'
    else outcome = 'failed'
    const res = remember(env, step, r, outcome)
    const retryable = outcome === 'failed' && step.retry && Date.now() + every * 1000 <= deadline && (!step.retry.while || evaluateAll(step.retry.while, { results: state.results, self: step.id }))
    if (retryable) {
      o.events?.note?.(`  ${step.id}: not passing yet (${oneLine(redact(env, summarizeFindings(res.findings) || describeFailure(r)), 160)}); retrying in ${every} s`)
      await env.sleep(every * 1000, signal)
      if (signal.aborted) return finish({ outcome: 'interrupted', command, exitCode: r.exitCode, attempts, summary: 'interrupted while waiting to retry', output: outputOf(env, r) })
      continue
    }
    const findingsLine = summarizeFindings(res.findings)
    const summary = outcome === 'interrupted' ? 'interrupted' : r.exitCode === 0 || r.exitCode === 3 ? findingsLine || (r.exitCode === 0 ? 'passed' : 'checks failed') : describeFailure(r)
    return finish({ outcome, command, exitCode: r.exitCode, ...(attempts > 1 ? { attempts } : {}), summary, output: outputOf(env, r) })
  }
}
