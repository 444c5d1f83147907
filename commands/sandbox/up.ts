import { Flags } from '@oclif/core'
import { LabctlCommand, describe } from '../_base.js'
import { sandboxUp, type SandboxUpResult } from '../../src/sandbox/index.js'
import { renderStatus } from '../_render.js'

export default class SandboxUp extends LabctlCommand<SandboxUpResult> {
  static override summary = 'Start the sandbox lab: a network of machines (network namespaces) running real Trivy, HAProxy with TLS, dnsmasq, a registry and Jenkins.'
  static override description = describe(
    `Idempotent: when the sandbox is already up nothing changes. Free ports are picked at start and written into
the generated inventory "sandbox" ($XDG_CONFIG_HOME/labctl/labs/sandbox.yaml), so \`labctl --lab sandbox ...\` works.
State, logs, the CA and the token live under $XDG_STATE_HOME/labctl/sandbox (or LABCTL_SANDBOX_DIR).
trivy-0 is provisioned by \`labctl trivy install\` itself (over SSH, with that inventory) and the edge's Trivy part is
what \`labctl trivy install --haproxy\` renders, so \`labctl trivy install --dry-run\` right after \`up\` has nothing to change.
The sandbox also serves the trivy .deb (built once around the real binary, cached under ~/.cache/labctl/trivy-deb)
release-style on a loopback package source: trivy.packageUrl in the inventory.
--bare starts the scanner host without trivy (no package, user, unit, env file or DB; HAProxy answers 503) for
\`labctl trivy install\` to provision.
The lab is a network: one network namespace per machine (edge, trivy-0, dns, registry, jenkins, agent, outsider)
on a /24 of 198.18.0.0/15 joined by a bridge; the workstation gets one link and one route into it, nothing is
routed off the machine. Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN): without them it stops at once with exit 1
and changes nothing. \`labctl sandbox exec NODE -- CMD\` runs a command on a node.
--loopback (or LABCTL_SANDBOX_NET=0) is the escape hatch for a machine without root: every part on 127.0.0.1 in
the machine's own network namespace, no Jenkins, the scanner host's firewall planned only.`,
  )
  static override examples = [
    '<%= config.bin %> sandbox up',
    '<%= config.bin %> trivy validate --lab sandbox',
    '<%= config.bin %> sandbox up --bare && <%= config.bin %> trivy install --lab sandbox --yes',
    '<%= config.bin %> sandbox status   # the nodes of the lab and their addresses',
    '<%= config.bin %> sandbox up --loopback   # without root: every part on 127.0.0.1',
  ]
  static override flags = {
    bare: Flags.boolean({ summary: 'Start the scanner host with no trivy at all, for `labctl trivy install`.' }),
    net: Flags.boolean({ summary: 'Run every machine in a network namespace of its own, on a lab /24 (the default; needs root).', exclusive: ['loopback'] }),
    loopback: Flags.boolean({ summary: 'Run every part on 127.0.0.1 instead (no root needed; no Jenkins, firewall planned only).', exclusive: ['net'] }),
  }

  async run(): Promise<SandboxUpResult> {
    const { flags } = await this.parse(SandboxUp)
    const result = await sandboxUp({ progress: (m) => this.note(`• ${m}`), bare: flags.bare, ...(flags.net ? { net: true } : flags.loopback ? { net: false } : {}) })
    this.log(result.changed ? `sandbox is up${result.bare ? ' with a bare scanner host' : ''} (${(result.durationMs / 1000).toFixed(1)} s)` : 'sandbox was already up: nothing changed')
    renderStatus(this, result)
    const pkg = result.packageServer
    if (pkg) this.log(`  package source ${pkg.healthy ? 'up' : 'DOWN'}: ${pkg.detail}${pkg.pid ? ` (pid ${pkg.pid})` : ''}`)
    const jk = result.jenkins
    if (jk) this.log(`  jenkins ${jk.healthy ? 'up' : 'DOWN'}: ${jk.detail}${jk.pid ? ` (pid ${jk.pid})` : ''}`)
    if (result.bare) this.log('  next: `labctl trivy install --lab sandbox` (the host has no trivy yet)')
    return result
  }
}
