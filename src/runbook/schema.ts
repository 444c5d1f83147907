// The runbook file format: a YAML document that reads like the wiki page (title, symptom, causes,
// prevention) and carries the steps an operator — or `labctl runbook run` — walks through.
import { z } from 'zod'

export const STEP_TYPES = ['check', 'diagnosis', 'action', 'manual'] as const
export type StepType = (typeof STEP_TYPES)[number]

const ID_RE = /^[a-z0-9][a-z0-9-]{0,62}$/
const stepId = z.string().regex(ID_RE, 'must be lowercase letters, digits and hyphens (e.g. check-db)')
const text = z.string().trim().min(1, 'must not be empty')

/** A labctl command line without the `labctl`: a string split like a shell would (quotes, no expansion) or an argv list. */
const command = z.union([text, z.array(z.string().min(1)).min(1, 'must not be empty')])

/** Where to go after a failed step: stop the run (default), carry on with the next step, or jump. */
export const OnFailureSchema = z.union([z.enum(['stop', 'continue']), z.strictObject({ goto: stepId.or(z.literal('end')) })])
export type OnFailure = z.infer<typeof OnFailureSchema>

const statusList = z.union([z.enum(['pass', 'warn', 'fail', 'skip']), z.array(z.enum(['pass', 'warn', 'fail', 'skip'])).min(1)])

/**
 * A pattern: a regular expression (the common subset, see pattern.ts), matched case-insensitively
 * anywhere in the text, in linear time. The parser checks it and reports where it is wrong.
 */
const pattern = z.string().min(1)

/** "Some finding (one entry of a check's result) matches all of these fields." */
export const FindingMatchSchema = z.strictObject({
  step: stepId.optional().describe('only findings of this check step (default: every check step run so far)'),
  check: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional().describe('check family: dns, tls, healthz, version, db, scan, auth, disk, db-freshness, db-file, journal, unit, pin, problem, error'),
  name: pattern.optional(),
  host: z.string().min(1).optional(),
  status: statusList.optional().describe('default: fail'),
  detail: pattern.optional(),
})
export type FindingMatch = z.infer<typeof FindingMatchSchema>

export type Condition = {
  finding?: FindingMatch | undefined
  exit?: { step: string; code: number | number[] } | undefined
  value?: { step: string; path: string; equals?: string | number | boolean | undefined; matches?: string | undefined } | undefined
  outcome?: { step: string; is: string | string[] } | undefined
  any?: Condition[] | undefined
  all?: Condition[] | undefined
  not?: Condition | undefined
}

const CONDITION_KEYS = ['finding', 'exit', 'value', 'outcome', 'any', 'all', 'not'] as const

export const ConditionSchema: z.ZodType<Condition> = z.lazy(() =>
  z
    .strictObject({
      finding: FindingMatchSchema.optional(),
      exit: z.strictObject({ step: stepId, code: z.union([z.number().int(), z.array(z.number().int()).min(1)]) }).optional(),
      value: z
        .strictObject({
          step: stepId,
          path: z.string().min(1).describe('dotted path into the step\'s JSON; * matches every array item or key'),
          equals: z.union([z.string(), z.number(), z.boolean()]).optional(),
          matches: pattern.optional(),
        })
        .optional(),
      outcome: z.strictObject({ step: stepId, is: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]) }).optional(),
      any: z.array(ConditionSchema).min(1).optional(),
      all: z.array(ConditionSchema).min(1).optional(),
      not: ConditionSchema.optional(),
    })
    .superRefine((c, ctx) => {
      const keys = CONDITION_KEYS.filter((k) => c[k] !== undefined)
      if (keys.length !== 1) {
        ctx.addIssue({ code: 'custom', message: `a condition has exactly one of: ${CONDITION_KEYS.join(', ')}${keys.length ? ` (found ${keys.join(', ')})` : ''}` })
      }
    }),
)

/** `when:` is a list of conditions that must all hold. */
const when = z.array(ConditionSchema).min(1, 'give at least one condition')

const common = {
  id: stepId,
  title: text,
  why: text.optional().describe('why this step exists: shown by `runbook show`'),
  next: stepId.or(z.literal('end')).optional().describe('where to go after this step (default: the next step)'),
  on_failure: OnFailureSchema.optional(),
  timeout: z.number().positive().max(86_400).optional().describe('seconds'),
}

export const CheckStepSchema = z.strictObject({
  ...common,
  type: z.literal('check'),
  run: command,
  require: z.enum(['pass', 'ran']).default('ran').describe('pass: the step fails unless every check passes (exit 0); ran: exit 0 or 3 both count as done'),
  host: z.boolean().default(true).describe('pass --host through to this command'),
  retry: z
    .strictObject({
      for: z.number().positive().max(3600).describe('seconds to keep retrying'),
      every: z.number().positive().max(600).default(2),
      while: when.optional().describe('retry only while these conditions hold on the last attempt'),
    })
    .optional(),
})

export const DiagnosisCaseSchema = z.strictObject({
  cause: stepId.describe('a key of the runbook\'s causes'),
  when,
  goto: stepId.or(z.literal('end')).optional(),
  follow_up: z.string().regex(ID_RE).optional().describe('another runbook to run next'),
  note: text.optional(),
})
export type DiagnosisCase = z.infer<typeof DiagnosisCaseSchema>

export const DiagnosisStepSchema = z.strictObject({
  ...common,
  type: z.literal('diagnosis'),
  cases: z.array(DiagnosisCaseSchema).min(1, 'give at least one case'),
  otherwise: z
    .strictObject({
      cause: stepId.optional().describe('the cause when no case matched (none: the diagnosis names nothing and the earlier cause stands)'),
      goto: stepId.or(z.literal('end')).optional(),
      follow_up: z.string().regex(ID_RE).optional(),
      note: text.optional(),
    })
    .optional(),
})

export const ActionStepSchema = z.strictObject({
  ...common,
  type: z.literal('action'),
  run: command,
  confirm: text.optional().describe('the question asked before running (default: "Run `labctl …`?")'),
  host: z.boolean().default(true),
})

export const ManualStepSchema = z.strictObject({
  ...common,
  type: z.literal('manual'),
  instructions: text,
  confirm: text.default('Done?'),
})

export const StepSchema = z.discriminatedUnion('type', [CheckStepSchema, DiagnosisStepSchema, ActionStepSchema, ManualStepSchema])

export const DrillSchema = z.strictObject({
  fault: z.string().min(1).describe('a `labctl sandbox break` fault'),
  cause: z.union([stepId, z.array(stepId).min(1)]).describe('the cause (or causes) the runbook must name'),
  recovers: z.boolean().default(false).describe('the runbook fixes it on its own: it must end with validate passing'),
})

export const RunbookSchema = z.strictObject({
  name: z.string().regex(ID_RE, 'must be lowercase letters, digits and hyphens, like the file name'),
  title: text,
  symptom: text,
  summary: text.optional(),
  seed: text.optional().describe('where this comes from in the seed page'),
  causes: z.record(stepId, text).refine((c) => Object.keys(c).length > 0, 'name at least one cause'),
  fix: text.optional(),
  prevention: text.optional(),
  drills: z.array(DrillSchema).default([]),
  steps: z.array(StepSchema).min(1, 'give at least one step'),
})

export type Runbook = z.infer<typeof RunbookSchema>
export type Step = z.infer<typeof StepSchema>
export type CheckStep = z.infer<typeof CheckStepSchema>
export type DiagnosisStep = z.infer<typeof DiagnosisStepSchema>
export type ActionStep = z.infer<typeof ActionStepSchema>
export type ManualStep = z.infer<typeof ManualStepSchema>
export type Drill = z.infer<typeof DrillSchema>

/** A runbook as loaded: the parsed document, where it came from, and a hash to notice edits between runs. */
export type LoadedRunbook = { runbook: Runbook; file: string; sha256: string; source: 'builtin' | 'site' | 'file' }
