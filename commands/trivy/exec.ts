import { Flags } from '@oclif/core'
import { LabctlCommand, describe } from '../_base.js'
import { sshFlags } from '../_flags.js'
import { selectHosts } from '../../src/inventory/load.js'
import { UsageError } from '../../src/errors.js'
import { quietTrivyAssignments } from '../../src/trivy/quiet.js'
import { LIMITS } from '../../src/inventory/schema.js'

/** Limits of one remote trivy command line (one SSH exec request, quoted). */
export const MAX_EXEC_ARGS = 1000
export const MAX_EXEC_BYTES = 64 * 1024

export type ExecResult = { hosts: Array<{ host: string; exitCode: number; stdout: string; stderr: string }> }

export default class TrivyExec extends LabctlCommand<ExecResult> {
  static override summary = "Run the scanner's own trivy CLI on the host(s), as the service user, with the server's cache dir."
  static override description = describe(
    `Everything after -- is passed to \`trivy\` literally (quoted, never interpreted by a shell), run as the
service user with TRIVY_CACHE_DIR set to the inventory's cache dir. Exit 3 when trivy exits non-zero.`,
  )
  static override strict = false
  static override examples = ['<%= config.bin %> trivy exec -- --version', '<%= config.bin %> trivy exec --host trivy-0 -- clean --scan-cache']
  static override flags = { ...sshFlags, timeout: Flags.integer({ summary: 'Timeout in milliseconds.', default: 300_000, min: 100, max: LIMITS.timeoutMs.max }) }

  async run(): Promise<ExecResult> {
    const { flags, argv } = await this.parse(TrivyExec)
    const args = (argv as string[]).filter((a, i) => !(i === 0 && a === '--'))
    if (args.length === 0) throw new UsageError('nothing to run', { suggestion: 'give trivy arguments after --, e.g. `labctl trivy exec -- --version`' })
    // The command travels as one SSH exec request: refuse an oversized one here, before connecting,
    // rather than let the server or the channel fail it with an unrelated message.
    const bytes = args.reduce((n, a) => n + Buffer.byteLength(a) + 3, 0)
    if (args.length > MAX_EXEC_ARGS || bytes > MAX_EXEC_BYTES) {
      throw new UsageError(`the trivy command line is too long: ${args.length} arguments, ${bytes} bytes (at most ${MAX_EXEC_ARGS} arguments and ${MAX_EXEC_BYTES} bytes)`, {
        code: 'COMMAND_TOO_LONG',
        suggestion: 'pass fewer arguments (trivy reads long lists from a file: e.g. --skip-dirs in trivy.yaml via --config)',
      })
    }
    const loaded = this.loadInventory(flags)
    const remote = await this.openRemote(flags)
    const inv = loaded.inventory
    const result: ExecResult = { hosts: [] }
    for (const h of selectHosts(inv, flags.host)) {
      const r = await remote.run(h, ['env', `TRIVY_CACHE_DIR=${inv.trivy.cacheDir}`, ...quietTrivyAssignments(), 'trivy', ...args], {
        user: inv.trivy.serviceUser,
        timeoutMs: flags.timeout,
        signal: this.abort.signal,
      })
      if (!this.jsonEnabled()) {
        if (r.stdout) process.stdout.write(r.stdout.endsWith('\n') ? r.stdout : `${r.stdout}\n`)
        if (r.stderr) process.stderr.write(r.stderr.endsWith('\n') ? r.stderr : `${r.stderr}\n`)
        if (r.code !== 0) this.note(`labctl: trivy exited ${r.code} on ${h.name}`)
      }
      if (r.code !== 0) this.markFailed()
      result.hosts.push({ host: h.name, exitCode: r.code, stdout: r.stdout, stderr: r.stderr })
    }
    return result
  }
}
