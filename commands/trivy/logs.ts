import { Flags } from '@oclif/core'
import { LabctlCommand, describe } from '../_base.js'
import { sshFlags } from '../_flags.js'
import { selectHosts } from '../../src/inventory/load.js'
import { InterruptedError } from '../../src/errors.js'
import { LIMITS } from '../../src/inventory/schema.js'

export type LogsResult = { hosts: Array<{ host: string; lines: number }> }

export default class TrivyLogs extends LabctlCommand<LogsResult> {
  static override summary = 'Show the Trivy service journal of the scanner host(s).'
  static override description = describe('Runs `journalctl -u SERVICE` over SSH. With --follow, streams until Ctrl-C.')
  static override examples = ['<%= config.bin %> trivy logs --since "-30min"', '<%= config.bin %> trivy logs --host trivy-0 --follow']
  static override flags = {
    ...sshFlags,
    since: Flags.string({ summary: 'Start time (journalctl --since syntax).' }),
    lines: Flags.integer({ char: 'n', summary: 'Show the last N lines.', min: 1, max: LIMITS.lines.max }),
    follow: Flags.boolean({ char: 'f', summary: 'Keep streaming new lines until Ctrl-C.' }),
  }

  async run(): Promise<LogsResult> {
    const { flags } = await this.parse(TrivyLogs)
    const loaded = this.loadInventory(flags)
    const remote = await this.openRemote(flags)
    const inv = loaded.inventory
    const hosts = selectHosts(inv, flags.host)
    const argv = ['journalctl', '-u', inv.trivy.serviceName, '--no-pager']
    if (flags.since) argv.push('--since', flags.since)
    if (flags.lines) argv.push('-n', String(flags.lines))
    const prefix = hosts.length > 1
    const out: LogsResult = { hosts: [] }
    if (flags.follow) {
      argv.push('-f')
      try {
        await Promise.all(
          hosts.map((h) =>
            remote.run(h, argv, {
              sudo: true,
              timeoutMs: 7 * 24 * 3600_000,
              signal: this.abort.signal,
              onStdout: (chunk) => process.stdout.write(prefix ? chunk.toString('utf8').replace(/^(?=.)/gm, `${h.name}: `) : chunk),
            }),
          ),
        )
      } catch (err) {
        if (!(err instanceof InterruptedError)) throw err
      }
      return { hosts: hosts.map((h) => ({ host: h.name, lines: -1 })) }
    }
    for (const h of hosts) {
      const r = await remote.run(h, argv, { sudo: true, timeoutMs: 60_000, check: true })
      const text = r.stdout.replace(/\n$/, '')
      if (!this.jsonEnabled()) process.stdout.write(`${prefix ? text.replace(/^/gm, `${h.name}: `) : text}\n`)
      out.hosts.push({ host: h.name, lines: text ? text.split('\n').length : 0 })
    }
    return out
  }
}
