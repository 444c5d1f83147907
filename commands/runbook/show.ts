import { Args } from '@oclif/core'
import { hostFlag } from '../_flags.js'
import { LabctlCommand, describe } from '../_base.js'
import { findRunbook, labContext, renderRunbook, type Runbook } from '../../src/runbook/index.js'

export type RunbookShowResult = { name: string; file: string; source: string; sha256: string; markdown: string; runbook: Runbook }

export default class RunbookShow extends LabctlCommand<RunbookShowResult> {
  static override summary = 'Show a runbook as a readable document: symptom, causes, fix, and every step with its command.'
  static override description = describe(
    `Renders the runbook as Markdown (stdout). The {{placeholders}} in titles and instructions are filled from the
inventory (--lab, --config, or the default one; public URL, service name, env file, …) when there is one.
NAME may also be a path to a runbook file; a file that does not parse is rejected with FILE:LINE:COL and what
is wrong (exit 2).`,
  )
  static override examples = ['<%= config.bin %> runbook show scan-500', '<%= config.bin %> runbook show dns-record-wrong --lab sandbox', '<%= config.bin %> runbook show ./my-runbook.yaml']
  static override args = { name: Args.string({ required: true, description: 'runbook name (see `labctl runbook list`) or path to a runbook file' }) }
  static override flags = { host: hostFlag('Fill {{host}} with this scanner host.') }

  async run(): Promise<RunbookShowResult> {
    const { args, flags } = await this.parse(RunbookShow)
    const loaded = findRunbook(args.name)
    // Filled from the inventory when there is one (--lab, --config, or the default); else left as {{placeholders}}.
    const vars = { ...labContext({ lab: flags.lab, config: flags.config, host: flags.host }).vars, ...(flags.host ? { host: flags.host } : {}) }
    const markdown = renderRunbook(loaded.runbook, { file: loaded.file, vars })
    if (!this.jsonEnabled()) process.stdout.write(markdown)
    return { name: loaded.runbook.name, file: loaded.file, source: loaded.source, sha256: loaded.sha256, markdown, runbook: loaded.runbook }
  }
}
