import { LabctlCommand, describe } from '../_base.js'
import { healSandbox } from '../../src/sandbox/faults.js'

export type SandboxHealResult = { healed: string[] }

export default class SandboxHeal extends LabctlCommand<SandboxHealResult> {
  static override summary = 'Undo every injected fault: token, DB, DNS, certificate and processes back to healthy.'
  static override description = describe('Safe to run when nothing is broken.')

  async run(): Promise<SandboxHealResult> {
    await this.parse(SandboxHeal)
    const r = await healSandbox()
    this.log(r.healed.length ? `sandbox healed (${r.healed.join(', ')})` : 'sandbox healed (no fault was recorded)')
    return r
  }
}
