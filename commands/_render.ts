// Text rendering shared by several commands (commands never import each other).
import type { CheckResult } from '../src/checks/types.js'
import { escapeTerminal } from '../src/errors.js'
import type { SandboxStatus } from '../src/sandbox/index.js'

const MARK: Record<CheckResult['status'], string> = { pass: 'ok  ', warn: 'WARN', fail: 'FAIL', skip: 'skip' }

/** One check result as a line (and its `next:` line when it did not pass). */
export function checkLine(r: CheckResult): string {
  return `${MARK[r.status]}  ${escapeTerminal(r.name).padEnd(40)} ${escapeTerminal(r.detail)}${r.status !== 'pass' && r.fix ? `\n      next: ${escapeTerminal(r.fix)}` : ''}`
}

/** The sandbox's parts, one line each (sandbox status, sandbox up). */
export function renderStatus(cmd: { log: (m: string) => void }, s: SandboxStatus): void {
  for (const c of s.components) cmd.log(`  ${c.healthy ? 'up  ' : 'DOWN'}  ${c.name.padEnd(9)} ${c.detail}${c.pid ? ` (pid ${c.pid})` : ''}`)
  if (s.network) {
    cmd.log(`  network ${s.network.subnet}: workstation ${s.network.workstation} (link ${s.network.link})`)
    for (const n of s.network.nodes) cmd.log(`    ${n.name.padEnd(9)} ${n.address.padEnd(15)} ${n.parts.length ? n.parts.join(', ') : '-'}`)
  }
  if (s.inventory) cmd.log(`  inventory: ${s.inventory}`)
  if (s.image) cmd.log(`  test image: ${s.image}`)
}
