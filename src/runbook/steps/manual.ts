// A manual step: instructions for a person and a confirmation that it was done. Unattended (--yes) it is
// recorded as "acknowledged", never as confirmed by a person; under --dry-run it is only planned.
import { fillTemplate } from '../argv.js'
import type { ManualStep } from '../schema.js'
import type { StepRecord } from '../state.js'
import { confirmStep, redact, titleOf, type Finish, type StepEnv } from './env.js'

export async function runManual(env: StepEnv, step: ManualStep, index: number, finish: Finish): Promise<StepRecord> {
  const instructions = redact(env, fillTemplate(step.instructions, env.vars))
  const question = fillTemplate(step.confirm, env.vars)
  env.o.events?.stepStart?.(step, index, 'manual step', titleOf(env, step))
  if (env.dryRun) return finish({ outcome: 'planned', summary: 'planned: manual step', instructions })
  const c = await confirmStep(env, question, instructions)
  if (!c.ok) return finish({ outcome: c.outcome, summary: c.why, instructions })
  return c.by === '--yes'
    ? finish({ outcome: 'acknowledged', confirmedBy: '--yes', summary: 'acknowledged (--yes): the instructions were recorded, not confirmed by a person', instructions })
    : finish({ outcome: 'confirmed', confirmedBy: 'operator', summary: `confirmed: ${question}`, instructions })
}
