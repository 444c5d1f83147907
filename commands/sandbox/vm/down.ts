import { LabctlCommand, describe } from '../../_base.js'
import { ExitCode } from '../../../src/errors.js'
import { vmDown, type VmDownResult } from '../../../src/sandbox/vm/index.js'

export default class SandboxVmDown extends LabctlCommand<VmDownResult> {
  static override summary = 'Stop the sandbox VM: QEMU stopped, its tap removed, its files and inventory entry gone.'
  static override description = describe('Safe to run when the VM is not running. The console log stays under the sandbox logs. Exit 1 if anything is left behind.')

  async run(): Promise<VmDownResult> {
    await this.parse(SandboxVmDown)
    const r = await vmDown()
    if (r.leftover.length) {
      this.log(`VM stopped, but left behind: ${r.leftover.join(', ')}`)
      this.markFailed(ExitCode.Failure)
    } else this.log(r.stopped.length ? `VM stopped (${r.stopped.join(', ')})` : 'VM was not running')
    return r
  }
}
