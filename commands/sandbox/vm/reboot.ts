import { Flags } from '@oclif/core'
import { LabctlCommand, describe } from '../../_base.js'
import { vmReboot, type VmRebootResult } from '../../../src/sandbox/vm/index.js'

export default class SandboxVmReboot extends LabctlCommand<VmRebootResult> {
  static override summary = 'Reboot the sandbox VM through its systemd (systemctl reboot over SSH) and wait for a login on the new boot.'
  static override description = describe('A real reboot: units start again as on boot. The new boot is told apart by its boot id.')
  static override flags = {
    timeout: Flags.integer({ summary: 'Seconds to wait for the VM to come back (default 900 under TCG, 180 under KVM: a loaded 2-core machine boots a TCG guest slowly).', min: 10, max: 3600 }),
  }

  async run(): Promise<VmRebootResult> {
    const { flags } = await this.parse(SandboxVmReboot)
    const r = await vmReboot({ progress: (m) => this.note(`• ${m}`), ...(flags.timeout ? { timeoutMs: flags.timeout * 1000 } : {}) })
    this.log(`${r.name} rebooted: back after ${(r.downtimeMs / 1000).toFixed(1)} s (boot ${r.bootId.slice(0, 8)}, was ${r.previousBootId.slice(0, 8)})`)
    return r
  }
}
