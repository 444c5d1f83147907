import { Flags } from '@oclif/core'
import { LabctlCommand, describe } from '../../_base.js'
import { vmUp, type VmUpResult } from '../../../src/sandbox/vm/index.js'

export default class SandboxVmUp extends LabctlCommand<VmUpResult> {
  static override summary = 'Boot the sandbox VM trivy-vm: Debian 12 with real systemd and cloud-init under QEMU, on the lab network.'
  static override description = describe(
    `Needs the sandbox up as a lab network (\`labctl sandbox up --net\`, as root). The disk image is built once by
debootstrap from the Debian mirror apt uses here and cached under $XDG_CACHE_HOME/labctl/vm/<recipe hash>/; each
\`up\` boots a fresh copy-on-write overlay of it. KVM is used when a short probe shows it really runs a guest,
else QEMU's TCG (LABCTL_VM_ACCEL=kvm|tcg decides outright). The VM gets a tap on the lab bridge and the address
.40 of the lab /24, a NoCloud seed with the sandbox's SSH key and a host key made here (so its known_hosts entry
exists before the first connection), and is added to the sandbox inventory as scanner host trivy-vm. Its serial
console is logged to <sandbox dir>/logs/trivy-vm-console.log. Idempotent: a running VM is left as it is.`,
  )
  static override examples = ['<%= config.bin %> sandbox up --net --bare && <%= config.bin %> sandbox vm up', '<%= config.bin %> trivy install --lab sandbox --host trivy-vm --yes']
  static override flags = {
    timeout: Flags.integer({ summary: 'Seconds to wait for the first SSH login and cloud-init (default 900 under TCG, 180 under KVM: a loaded 2-core machine boots a TCG guest slowly).', min: 10, max: 3600 }),
  }

  async run(): Promise<VmUpResult> {
    const { flags } = await this.parse(SandboxVmUp)
    const r = await vmUp({ progress: (m) => this.note(`• ${m}`), ...(flags.timeout ? { bootTimeoutMs: flags.timeout * 1000 } : {}) })
    if (!r.changed) this.log(`${r.name} was already running on ${r.address}: nothing changed`)
    else {
      this.log(`${r.name} is up on ${r.address} (${r.accel}): SSH after ${((r.bootMs ?? 0) / 1000).toFixed(1)} s, ${(r.durationMs / 1000).toFixed(1)} s in all`)
      this.log(`  image ${r.image.hash} (${r.image.built ? `built in ${((r.image.buildMs ?? 0) / 1000).toFixed(0)} s` : 'cached'}), kernel ${r.image.kernelVersion}`)
      this.log(`  cloud-init: ${r.cloudInit}`)
    }
    this.log(`  host key ${r.hostKeyFingerprint}; console ${r.consoleLog}`)
    this.log(`  inventory: ${r.inventory} (host trivy-vm)`)
    return r
  }
}
