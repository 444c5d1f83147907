import { Args, Flags } from '@oclif/core'
import { LabctlCommand, describe } from '../_base.js'
import { FAULTS, breakSandbox } from '../../src/sandbox/faults.js'
import { parseDelay } from '../../src/sandbox/netfaults.js'

export type SandboxBreakResult = { fault: string; description: string }

export default class SandboxBreak extends LabctlCommand<SandboxBreakResult> {
  static override summary = 'Inject a fault into the sandbox lab, for drills and tests.'
  static override description = describe(`Faults:\n${Object.entries(FAULTS).map(([k, v]) => `  ${k.padEnd(16)} ${v}`).join('\n')}\nUndo with \`labctl sandbox heal\`.`)
  static override args = {
    fault: Args.string({ required: true, description: 'fault to inject', options: Object.keys(FAULTS) }),
    node: Args.string({ required: false, description: 'the node, for link-down (e.g. trivy-0, edge, dns)' }),
  }
  static override flags = { after: Flags.string({ summary: 'ssh-cut: cut SSH after this delay (e.g. 2s, 500ms; at most 10m), so it lands mid-step.' }) }
  static override examples = [
    '<%= config.bin %> sandbox break service-stopped',
    '<%= config.bin %> sandbox break link-down trivy-0',
    '<%= config.bin %> sandbox break ssh-cut --after 2s',
    '<%= config.bin %> sandbox heal',
  ]

  async run(): Promise<SandboxBreakResult> {
    const { args, flags } = await this.parse(SandboxBreak)
    const r = await breakSandbox(args.fault, undefined, {
      ...(args.node !== undefined ? { node: args.node } : {}),
      ...(flags.after !== undefined ? { afterMs: parseDelay(flags.after) } : {}),
    })
    this.log(`sandbox broken: ${r.fault} — ${r.description}`)
    return r
  }
}
