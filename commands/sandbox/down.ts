import { LabctlCommand, describe } from '../_base.js'
import { sandboxDown, type SandboxDownResult } from '../../src/sandbox/index.js'

export default class SandboxDown extends LabctlCommand<SandboxDownResult> {
  static override summary = 'Stop the sandbox lab and remove its state; no process or port is left behind.'
  static override description = describe(
    `Safe to run when the sandbox is already down. A lab network (\`sandbox up --net\`) goes too: every process
left in a node's namespace, the namespaces (with their links and the bridge) and the workstation's one link
and route. Anything that could not be removed is listed, and the exit code is then 3.`,
  )

  async run(): Promise<SandboxDownResult> {
    await this.parse(SandboxDown)
    const result = await sandboxDown()
    if (result.leftover.length) {
      this.log(`sandbox stopped, but left behind: ${result.leftover.join(', ')}`)
      this.markFailed()
    } else {
      this.log(result.stopped.length ? `sandbox stopped (${result.stopped.join(', ')})` : 'sandbox was not running')
    }
    return result
  }
}
