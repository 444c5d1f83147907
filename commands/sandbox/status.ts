import { LabctlCommand, describe } from '../_base.js'
import { renderStatus } from '../_render.js'
import { sandboxStatus, type SandboxStatus } from '../../src/sandbox/index.js'

export default class SandboxStatusCommand extends LabctlCommand<SandboxStatus> {
  static override summary = 'Show whether each part of the sandbox lab is running and answering.'
  static override description = describe('Exit code 3 when the sandbox is not fully up.')

  async run(): Promise<SandboxStatus> {
    await this.parse(SandboxStatusCommand)
    const s = await sandboxStatus()
    if (!s.components.length) this.log('sandbox is down (run `labctl sandbox up`)')
    else {
      this.log(s.up ? 'sandbox is up' : 'sandbox is partly down (run `labctl sandbox up` to repair it)')
      renderStatus(this, s)
    }
    if (!s.up) this.markFailed()
    return s
  }
}
