// An action step: a state-changing labctl operation. It shows the command, asks (or takes --yes) and
// runs it once with --yes; under --dry-run it is only planned, and every later check is only planned too
// (what they would find depends on the action).
import { fillTemplate, showCommand } from '../argv.js'
import type { ActionStep } from '../schema.js'
import type { StepOutcome, StepRecord } from '../state.js'
import { confirmStep, DEFAULT_TIMEOUT_S, describeFailure, filledArgv, invoke, outputOf, redact, remember, skippedFor, titleOf, wasInterrupted, withRunFlags, type Finish, type StepEnv } from './env.js'

export async function runAction(env: StepEnv, step: ActionStep, index: number, finish: Finish): Promise<StepRecord> {
  const { o, state } = env
  const title = titleOf(env, step)
  const filled = filledArgv(env, step)
  if ('missing' in filled) {
    o.events?.stepStart?.(step, index, '', title)
    return finish(skippedFor(filled.missing))
  }
  const argv = withRunFlags(env, step, filled.argv, ['--yes'])
  const shown = showCommand(argv.filter((x) => x !== '--json'))
  const command = redact(env, showCommand(argv))
  if (env.dryRun) {
    state.planning = true
    o.events?.stepStart?.(step, index, `would run: labctl ${shown}`, title)
    return finish({ outcome: 'planned', command, summary: `planned: labctl ${shown}` })
  }
  o.events?.stepStart?.(step, index, `labctl ${shown}`, title)
  const c = await confirmStep(env, fillTemplate(step.confirm ?? `Run \`labctl ${shown}\`?`, env.vars), `${step.title}\n  will run: labctl ${shown}`)
  if (!c.ok) return finish({ outcome: c.outcome, command, summary: c.why })
  const r = await invoke(env, argv, step.timeout ?? DEFAULT_TIMEOUT_S.action)
  const outcome: StepOutcome = wasInterrupted(env, r) ? 'interrupted' : r.exitCode === 0 ? 'done' : 'failed'
  remember(env, step, r, outcome)
  const summary = outcome === 'done' ? `done: labctl ${shown}` : outcome === 'interrupted' ? 'interrupted' : describeFailure(r)
  return finish({ outcome, command, exitCode: r.exitCode, confirmedBy: c.by, summary, output: outputOf(env, r) })
}
