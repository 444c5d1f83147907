import { LabctlCommand, describe } from '../_base.js'
import { sandboxStatus, type SandboxStatus } from '../../src/sandbox/index.js'

export function renderStatus(cmd: { log: (m: string) => void }, s: SandboxStatus): void {
  for (const c of s.components) cmd.log(`  ${c.healthy ? 'up  ' : 'DOWN'}  ${c.name.padEnd(9)} ${c.detail}${c.pid ? ` (pid ${c.pid})` : ''}`)
  if (s.network) {
    cmd.log(`  network ${s.network.subnet}: workstation ${s.network.workstation} (link ${s.network.link})`)
    for (const n of s.network.nodes) cmd.log(`    ${n.name.padEnd(9)} ${n.address.padEnd(15)} ${n.parts.length ? n.parts.join(', ') : '-'}`)
  }
  if (s.inventory) cmd.log(`  inventory: ${s.inventory}`)
  if (s.image) cmd.log(`  test image: ${s.image}`)
}

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
