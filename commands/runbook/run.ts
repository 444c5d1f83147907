import { resolve } from 'node:path'
import { Args, Flags } from '@oclif/core'
import { hostFlag } from '../_flags.js'
import { LabctlCommand, describe } from '../_base.js'
import { UsageError, type ExitCodeValue } from '../../src/errors.js'
import {
  executeRunbook,
  findResumable,
  findRunbook,
  labContext,
  labctlRunner,
  runbooksStateDir,
  type Prompter,
  type RunResult,
  type StepRecord,
} from '../../src/runbook/index.js'

export type RunbookRunResult = RunResult

const MARK: Record<StepRecord['outcome'], string> = {
  passed: 'ok  ',
  problems: 'seen',
  failed: 'FAIL',
  diagnosed: '=>  ',
  undiagnosed: '=>  ',
  done: 'done',
  planned: 'plan',
  skipped: 'skip',
  confirmed: 'ok  ',
  acknowledged: 'ack ',
  declined: 'NO  ',
  interrupted: 'INT ',
  'needs-confirmation': 'WAIT',
}

export default class RunbookRun extends LabctlCommand<RunbookRunResult> {
  static override summary = 'Run an incident runbook step by step: checks, diagnosis, actions (confirmed) and manual steps, with an evidence transcript.'
  static override description = describe(
    `Each check and action step runs the real labctl (with --json, --lab/--config and --host passed through) and keeps
its JSON; diagnoses branch on what the checks found and name the cause; actions ask before they change anything
(--yes answers yes); manual steps show instructions and wait for a confirmation (with --yes and no terminal they
are recorded as "acknowledged"). A failed step stops the run unless the runbook says otherwise.
  --dry-run   runs the checks and the diagnosis, then only plans the actions and manual steps; check steps
              are read-only by construction (the parser refuses a check whose command may change state)
  --resume    continues the newest unfinished run of NAME (interrupted, failed, or waiting for a confirmation)
State: $XDG_STATE_HOME/labctl/runbooks/RUN-ID/state.json. The transcript (Markdown and JSON, secrets redacted)
goes next to it, or to --transcript DIR as RUN-ID.md and RUN-ID.json (DIR: an existing directory, or a new
one in an existing directory). Ctrl-C ends the run after the current step (exit 130; twice: at once).
Exit: 0 completed, 3 a required check still fails (the problem persists), 2 a confirmation was needed (or a
broken runbook), 1 a step could not run or an action failed, 130 interrupted (resume with --resume).`,
  )
  static override examples = [
    '<%= config.bin %> runbook run scan-500 --dry-run',
    '<%= config.bin %> runbook run scan-500',
    '<%= config.bin %> runbook run db-stale --yes --transcript ./incident-42',
    '<%= config.bin %> runbook run high-critical-new-image --var image=registry.lab/app:1',
    '<%= config.bin %> runbook run scan-500 --resume',
  ]
  static override args = { name: Args.string({ required: true, description: 'runbook name (see `labctl runbook list`) or path to a runbook file' }) }
  static override flags = {
    host: hostFlag('Only this scanner host: passed to every step as --host.'),
    'dry-run': Flags.boolean({ summary: 'Run only the (read-only) checks and the diagnosis; plan the actions and manual steps.' }),
    resume: Flags.boolean({ summary: 'Continue the newest unfinished run of this runbook where it stopped.' }),
    'run-id': Flags.string({ summary: 'With --resume: the run to continue (default: the newest unfinished one).', dependsOn: ['resume'] }),
    transcript: Flags.string({ summary: 'Write the evidence transcript to this directory (RUN-ID.md and RUN-ID.json); created if its parent exists.' }),
    var: Flags.string({ summary: 'A value for a {{placeholder}} of the runbook, KEY=VALUE (repeatable).', multiple: true }),
  }

  async run(): Promise<RunbookRunResult> {
    const { args, flags } = await this.parse(RunbookRun)
    if (flags.resume && flags['dry-run']) throw new UsageError('--resume and --dry-run do not go together', { suggestion: 'a dry run has nothing to resume: run it again' })
    const vars: Record<string, string> = {}
    for (const v of flags.var ?? []) {
      const m = /^([A-Za-z][A-Za-z0-9_-]*)=(.*)$/s.exec(v)
      if (!m) throw new UsageError(`--var "${v}" is not KEY=VALUE`, { suggestion: 'e.g. --var image=registry.lab/app:1' })
      vars[m[1]!] = m[2]!
    }
    const loaded = findRunbook(args.name)
    const stateRoot = runbooksStateDir()
    const resume = flags.resume ? findResumable(stateRoot, loaded.runbook.name, flags['run-id']) : undefined
    const lab = flags.lab ?? resume?.options.lab
    const config = flags.config ?? resume?.options.config
    const host = flags.host ?? resume?.options.host
    const ctx = labContext({ lab, config, host })
    for (const w of ctx.warnings) this.warn(w)
    const json = this.jsonEnabled()
    const prompter = this.canPrompt(flags) ? await this.prompter() : undefined
    if (resume) this.note(`resuming ${resume.runId} at step ${resume.next} (it was ${resume.status})`)
    else this.note(`runbook ${loaded.runbook.name}: ${loaded.runbook.title}${flags['dry-run'] ? ' (dry run: actions are only planned)' : ''}`)
    const total = loaded.runbook.steps.length
    const result = await executeRunbook({
      loaded,
      runner: labctlRunner(),
      lab,
      config,
      host,
      vars: { ...(resume?.options.vars ?? {}), ...vars },
      inventoryVars: ctx.vars,
      secrets: ctx.secrets,
      yes: Boolean(flags.yes),
      prompter,
      dryRun: flags['dry-run'],
      stateRoot,
      transcriptDir: flags.transcript ? resolve(flags.transcript) : undefined,
      resume,
      signal: this.abort.signal,
      events: json
        ? {}
        : {
            stepStart: (step, i, detail, title) => this.note(`\n[${i + 1}/${total}] ${step.id} (${step.type}): ${title}${detail && step.type !== 'diagnosis' && step.type !== 'manual' ? `\n      ${detail}` : ''}`),
            stepEnd: (r) => this.note(`${MARK[r.outcome]}  ${r.summary}${r.handler && r.handler !== 'stopped the run' ? ` → ${r.handler}` : ''}`),
            note: (m) => this.note(m),
          },
    })
    for (const w of result.warnings) this.warn(w)
    if (!json) this.log(this.summary(result))
    if (result.exitCode !== 0) this.markFailed(result.exitCode as ExitCodeValue)
    return result
  }

  private summary(r: RunResult): string {
    const lines = ['', `runbook ${r.runbook}: ${r.status}${r.stoppedAt ? ` at step ${r.stoppedAt}` : ''} (${(r.durationMs / 1000).toFixed(1)} s, run ${r.runId})`]
    lines.push(`cause: ${r.cause ? `${r.cause.id} — ${r.cause.description}` : 'not diagnosed'}`)
    if (r.verified !== null) lines.push(`verified: ${r.verified ? 'yes, the final checks pass' : 'NO, the final checks still fail'}`)
    lines.push(`transcript: ${r.transcript.markdown}`)
    const next =
      r.status === 'interrupted' || r.status === 'failed' || r.status === 'stopped'
        ? `after fixing what stopped it: labctl runbook run ${r.runbook} --resume`
        : r.status === 'needs-confirmation'
          ? `rerun from a terminal, or with --yes: labctl runbook run ${r.runbook} --resume --yes`
          : r.followUp
            ? `labctl runbook run ${r.followUp}`
            : undefined
    if (r.followUp && next !== `labctl runbook run ${r.followUp}`) lines.push(`follow-up: labctl runbook run ${r.followUp}`)
    if (next) lines.push(`next: ${next}`)
    return lines.join('\n')
  }

  private async prompter(): Promise<Prompter> {
    const { confirm } = await import('@inquirer/prompts')
    return {
      show: (text) => process.stderr.write(`\n${text.trim()}\n\n`),
      confirm: async (message, signal) => {
        try {
          return await confirm({ message, default: false }, { signal, output: process.stderr })
        } catch {
          return false
        }
      },
    }
  }
}
