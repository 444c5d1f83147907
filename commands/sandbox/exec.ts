import { Args, Flags } from '@oclif/core'
import { LabctlCommand, describe } from '../_base.js'
import { NODES } from '../../src/sandbox/netns.js'
import { sandboxExec, type SandboxExecResult } from '../../src/sandbox/exec.js'

export default class SandboxExec extends LabctlCommand<SandboxExecResult> {
  static override summary = "Run a command on one machine of the sandbox lab (inside that node's namespaces)."
  static override description = describe(
    `Everything after -- is the command, passed literally (never through a shell). It runs in the node's
network namespace (a lab started with \`sandbox up --net\`); on trivy-0 also in the scanner host's private mount
and UTS namespaces, so it sees the host's /etc, /usr and /var. Nodes: ${NODES.join(', ')}.
labctl exits with the command's own exit code; 1 when it could not run it, 2 for a bad node or no command.
With --json the output is captured and returned instead.`,
  )
  static override strict = false
  static override args = { node: Args.string({ required: true, description: 'node to run on', options: [...NODES] }) }
  static override examples = [
    '<%= config.bin %> sandbox exec agent -- ip -br addr',
    '<%= config.bin %> sandbox exec outsider -- curl -m 3 http://trivy-0.sandbox.lab.test:4954/healthz',
    '<%= config.bin %> sandbox exec trivy-0 -- ss -tlnp',
  ]
  static override flags = { timeout: Flags.integer({ summary: 'Stop the command after this many milliseconds.', default: 600_000, min: 100 }) }

  async run(): Promise<SandboxExecResult> {
    const { args, argv, flags } = await this.parse(SandboxExec)
    // argv holds the node first, then the command (oclif drops the `--`).
    const rest = (argv as string[]).slice(1)
    const cmd = rest[0] === '--' ? rest.slice(1) : rest
    const r = await sandboxExec(args.node, cmd, { capture: this.jsonEnabled(), timeoutMs: flags.timeout })
    process.exitCode = r.exitCode
    return r
  }
}
