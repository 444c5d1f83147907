import { Flags } from '@oclif/core'
import { LabctlCommand, describe } from '../_base.js'
import { healSandbox } from '../../src/sandbox/faults.js'

export type SandboxHealResult = { healed: string[] }

export default class SandboxHeal extends LabctlCommand<SandboxHealResult> {
  static override summary = 'Undo every injected fault: token, DB, DNS, certificate and processes back to healthy.'
  static override description = describe('Undoes the faults `sandbox break` recorded; --all resets every part whatever was recorded. Safe to run when nothing is broken.')
  static override flags = { all: Flags.boolean({ summary: 'Reset token, DB, DNS, certificate and service even if no fault was recorded.' }) }

  async run(): Promise<SandboxHealResult> {
    const { flags } = await this.parse(SandboxHeal)
    const r = await healSandbox(undefined, { all: flags.all })
    this.log(r.healed.length ? `sandbox healed (${r.healed.join(', ')})` : 'sandbox healed (no fault was recorded)')
    return r
  }
}
