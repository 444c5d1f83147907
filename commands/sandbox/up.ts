import { LabctlCommand, describe } from '../_base.js'
import { sandboxUp, type SandboxUpResult } from '../../src/sandbox/index.js'
import { renderStatus } from './status.js'

export default class SandboxUp extends LabctlCommand<SandboxUpResult> {
  static override summary = 'Start the sandbox lab: real Trivy server, HAProxy with TLS, dnsmasq and a registry on 127.0.0.1.'
  static override description = describe(
    `Idempotent: when the sandbox is already up nothing changes. Free ports are picked at start and written into
the generated inventory "sandbox" ($XDG_CONFIG_HOME/labctl/labs/sandbox.yaml), so \`labctl --lab sandbox ...\` works.
State, logs, the CA and the token live under $XDG_STATE_HOME/labctl/sandbox (or LABCTL_SANDBOX_DIR).`,
  )
  static override examples = ['<%= config.bin %> sandbox up', '<%= config.bin %> trivy validate --lab sandbox']

  async run(): Promise<SandboxUpResult> {
    await this.parse(SandboxUp)
    const result = await sandboxUp({ progress: (m) => this.note(`• ${m}`) })
    this.log(result.changed ? `sandbox is up (${(result.durationMs / 1000).toFixed(1)} s)` : 'sandbox was already up: nothing changed')
    renderStatus(this, result)
    return result
  }
}
