import { Args } from '@oclif/core'
import { LabctlCommand, describe } from '../_base.js'
import { FAULTS, breakSandbox } from '../../src/sandbox/faults.js'

export type SandboxBreakResult = { fault: string; description: string }

export default class SandboxBreak extends LabctlCommand<SandboxBreakResult> {
  static override summary = 'Inject a fault into the sandbox lab, for drills and tests.'
  static override description = describe(`Faults:\n${Object.entries(FAULTS).map(([k, v]) => `  ${k.padEnd(16)} ${v}`).join('\n')}\nUndo with \`labctl sandbox heal\`.`)
  static override args = { fault: Args.string({ required: true, description: 'fault to inject', options: Object.keys(FAULTS) }) }
  static override examples = ['<%= config.bin %> sandbox break service-stopped', '<%= config.bin %> sandbox heal']

  async run(): Promise<SandboxBreakResult> {
    const { args } = await this.parse(SandboxBreak)
    const r = await breakSandbox(args.fault)
    this.log(`sandbox broken: ${r.fault} — ${r.description}`)
    return r
  }
}
