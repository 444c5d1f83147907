import { LabctlCommand, describe } from '../_base.js'
import { ExitCode } from '../../src/errors.js'
import { listRunbooks, runbookDirs, type RunbookProblem } from '../../src/runbook/index.js'

export type RunbookListEntry = {
  name: string
  title: string
  symptom: string
  file: string
  source: 'builtin' | 'site' | 'file'
  steps: number
  causes: string[]
  drills: Array<{ fault: string; cause: string[]; recovers: boolean }>
}
export type RunbookListResult = { runbooks: RunbookListEntry[]; dirs: string[]; problems: RunbookProblem[] }

export default class RunbookList extends LabctlCommand<RunbookListResult> {
  static override summary = 'List the incident runbooks: one per failure mode of the scanner.'
  static override description = describe(
    `Runbooks come from the project's runbooks/ and from $XDG_CONFIG_HOME/labctl/runbooks/ (a site runbook of the
same name wins). A runbook file that does not parse is listed as a problem (FILE:LINE:COL) and the exit code is 2.`,
  )
  static override examples = ['<%= config.bin %> runbook list', '<%= config.bin %> runbook show scan-401', '<%= config.bin %> runbook run scan-401 --dry-run']

  async run(): Promise<RunbookListResult> {
    await this.parse(RunbookList)
    const { runbooks, problems } = listRunbooks()
    const entries: RunbookListEntry[] = runbooks.map(({ runbook: rb, file, source }) => ({
      name: rb.name,
      title: rb.title,
      symptom: rb.symptom.trim(),
      file,
      source,
      steps: rb.steps.length,
      causes: Object.keys(rb.causes),
      drills: rb.drills.map((d) => ({ fault: d.fault, cause: Array.isArray(d.cause) ? d.cause : [d.cause], recovers: d.recovers })),
    }))
    const width = Math.max(4, ...entries.map((e) => e.name.length))
    for (const e of entries) this.log(`${e.name.padEnd(width)}  ${e.title}${e.source === 'site' ? '  (site)' : ''}`)
    if (!entries.length) this.log('no runbooks found')
    for (const p of problems) process.stderr.write(`labctl: broken runbook: ${p.file}:${p.line}:${p.column}: ${p.key ? `${p.key}: ` : ''}${p.message}\n`)
    if (problems.length) this.markFailed(ExitCode.Usage)
    else this.note(`\nrun one: labctl runbook run NAME   (read it first: labctl runbook show NAME)`)
    return { runbooks: entries, dirs: runbookDirs().map((d) => d.dir), problems }
  }
}
