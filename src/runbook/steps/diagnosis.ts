// A diagnosis step: the first case whose conditions all hold names the cause (with the findings that
// made it hold as evidence) and may say where to go; else `otherwise:`. It runs nothing: it reads the
// results the checks left. Its patterns match in linear time within a budget (conditions.ts), so a
// diagnosis ends promptly whatever the checks printed.
import { fillTemplate } from '../argv.js'
import { CONDITION_BUDGET, evaluateAll, evidence } from '../conditions.js'
import type { DiagnosisStep } from '../schema.js'
import { redact, titleOf, type Finish, type StepEnv, type StepRun } from './env.js'

function setCause(env: StepEnv, cause: string): void {
  env.state.cause = cause
  if (!env.state.causes.includes(cause)) env.state.causes.push(cause)
}

export function runDiagnosis(env: StepEnv, step: DiagnosisStep, index: number, finish: Finish): StepRun {
  const { state, rb, vars } = env
  env.o.events?.stepStart?.(step, index, 'diagnosis', titleOf(env, step))
  if (env.dryRun && state.planning) return { record: finish({ outcome: 'planned', summary: 'planned: depends on the outcome of the planned action; the plan ends here' }) }
  const ctx = { results: state.results, budget: { left: CONDITION_BUDGET } }
  for (const c of step.cases) {
    if (!evaluateAll(c.when, ctx)) continue
    setCause(env, c.cause)
    if (c.follow_up) state.followUp = c.follow_up
    const ev = evidence(c.when, ctx).map((f) => ({ ...f, detail: redact(env, f.detail) }))
    const record = finish({
      outcome: 'diagnosed',
      cause: c.cause,
      causeText: rb.causes[c.cause]!,
      summary: `cause: ${c.cause} — ${rb.causes[c.cause]}`,
      ...(ev.length ? { evidence: ev } : {}),
      ...(c.follow_up ? { followUp: c.follow_up } : {}),
      ...(c.note ? { note: fillTemplate(c.note, vars) } : {}),
    })
    return { record, goto: c.goto }
  }
  const c = step.otherwise
  if (!c) return { record: finish({ outcome: 'undiagnosed', summary: 'no case matched; continuing with the next step' }) }
  if (c.follow_up) state.followUp = c.follow_up
  const note = c.note ? fillTemplate(c.note, vars) : undefined
  const extra = { ...(c.follow_up ? { followUp: c.follow_up } : {}), ...(note ? { note } : {}) }
  if (c.cause === undefined) {
    return { record: finish({ outcome: 'undiagnosed', summary: `no case matched${state.cause ? `; the cause stays ${state.cause}` : ''}${note ? ` — ${note}` : ''}`, ...extra }), goto: c.goto }
  }
  setCause(env, c.cause)
  return { record: finish({ outcome: 'undiagnosed', cause: c.cause, causeText: rb.causes[c.cause]!, summary: `no case matched: ${c.cause} — ${rb.causes[c.cause]}`, ...extra }), goto: c.goto }
}
