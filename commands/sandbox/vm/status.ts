import { LabctlCommand, describe } from '../../_base.js'
import { vmStatus, type VmStatus } from '../../../src/sandbox/vm/index.js'

export default class SandboxVmStatus extends LabctlCommand<VmStatus> {
  static override summary = 'Show whether the sandbox VM runs and answers SSH, with its systemd state, kernel and uptime.'
  static override description = describe('Exit code 3 when the VM is not up (not started, QEMU gone, or no SSH login).')

  async run(): Promise<VmStatus> {
    await this.parse(SandboxVmStatus)
    const s = await vmStatus()
    this.log(`${s.name}: ${s.up ? 'up' : 'DOWN'} — ${s.detail}`)
    if (s.consoleLog) this.log(`  console: ${s.consoleLog}`)
    if (!s.up) this.markFailed()
    return s
  }
}
