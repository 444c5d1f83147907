import { Flags } from '@oclif/core'
import { LabctlCommand, describe } from '../_base.js'
import { sshFlags } from '../_flags.js'
import { selectHosts } from '../../src/inventory/load.js'
import { UsageError } from '../../src/errors.js'
import { readJournal, rollbackRotation, rotateToken, rotationPlan, type Journal } from '../../src/trivy/rotate.js'
import { LIMITS } from '../../src/inventory/schema.js'

export type RotateTokenResult = { action: 'rotate' | 'resume' | 'rollback' | 'status' | 'dry-run'; plan?: string[]; journal?: Journal | null }

export default class TrivyRotateToken extends LabctlCommand<RotateTokenResult> {
  static override summary = "Rotate the scanner token across the server's EnvironmentFile, the Jenkins credential and secrets/trivy-vm."
  static override description = describe(
    `A journaled, resumable, verified procedure: generate a strong token (or read one from --token-file PATH|-),
stage it locally (0600, refusing a secrets dir that git would commit), rewrite the server's EnvironmentFile over
SFTP (root 0600) and restart, prove the new token is accepted and the old one rejected, update the Jenkins Secret
Text credential, then promote it locally (previous kept as token.prev) and append an audit line.
A failure after the server changed rolls server and Jenkins back to the old token and verifies it (default), or
stops for --resume with --no-rollback. The journal (rotation.json) holds fingerprints, never the token.`,
  )
  static override examples = [
    '<%= config.bin %> trivy rotate-token --dry-run',
    '<%= config.bin %> trivy rotate-token --yes',
    '<%= config.bin %> trivy rotate-token --status',
    '<%= config.bin %> trivy rotate-token --resume --yes',
  ]
  static override flags = {
    ...sshFlags,
    'dry-run': Flags.boolean({ summary: 'Print the plan and stop.' }),
    status: Flags.boolean({ summary: 'Show where the last rotation stands.' }),
    resume: Flags.boolean({ summary: 'Finish an interrupted rotation.' }),
    rollback: Flags.boolean({ summary: 'Undo an interrupted rotation: everything back to the old token.' }),
    'no-rollback': Flags.boolean({ summary: 'On failure, stop instead of rolling back (finish with --resume).' }),
    create: Flags.boolean({ summary: 'Create the Jenkins credential when it does not exist.' }),
    'token-file': Flags.string({ summary: 'Take the new token from this file, or "-" for stdin (default: generate).' }),
    'jenkins-timeout': Flags.integer({ summary: 'Timeout of the Jenkins update in milliseconds.', default: 15_000, min: 100, max: LIMITS.timeoutMs.max }),
    'health-timeout': Flags.integer({ summary: 'How long to wait for /healthz after a restart, in milliseconds.', default: 60_000, min: 100, max: LIMITS.timeoutMs.max }),
  }

  async run(): Promise<RotateTokenResult> {
    const { flags } = await this.parse(TrivyRotateToken)
    const loaded = this.loadInventory(flags)
    if (flags.status) {
      const j = readJournal(loaded) ?? null
      if (!j) this.log('no rotation has been recorded')
      else {
        this.log(`rotation ${j.id} by ${j.operator}: ${j.state} (${j.oldFingerprint} → ${j.newFingerprint}, hosts ${j.hosts.join(', ')})`)
        for (const s of j.steps) this.log(`  ${s.at}  ${s.step.padEnd(16)} ${s.status.padEnd(8)} ${s.detail}`)
        if (j.error) this.log(`  error: ${j.error}`)
      }
      return { action: 'status', journal: j }
    }
    if (flags.host && !flags.rollback && !flags.resume) {
      throw new UsageError('the token must change on every scanner host at once (Trivy accepts one token)', { suggestion: 'drop --host' })
    }
    const hosts = selectHosts(loaded.inventory, flags.host)
    const plan = rotationPlan({ loaded, hosts, rollback: !flags['no-rollback'] })
    if (flags['dry-run']) {
      plan.forEach((p, i) => this.log(`${i + 1}. ${p}`))
      return { action: 'dry-run', plan }
    }
    plan.forEach((p, i) => this.note(`${i + 1}. ${p}`))
    await this.confirmOrStop(flags, 'Rotate the token now?', 'rotating the token changes the servers and Jenkins')
    const remote = await this.openRemote(flags)
    const opts = {
      loaded,
      hosts,
      remote,
      tokenFile: flags['token-file'],
      rollback: !flags['no-rollback'],
      create: flags.create,
      jenkinsTimeoutMs: flags['jenkins-timeout'],
      healthTimeoutMs: flags['health-timeout'],
      signal: this.abort.signal,
      progress: (m: string) => this.note(`• ${m}`),
    }
    if (flags.rollback) {
      const j = await rollbackRotation(opts)
      this.log(`rotation ${j.id} rolled back: every place holds the old token (${j.oldFingerprint})`)
      return { action: 'rollback', journal: j }
    }
    const r = await rotateToken({ ...opts, resume: flags.resume })
    this.log(`token rotated: ${r.journal.oldFingerprint} → ${r.journal.newFingerprint} on ${r.journal.hosts.join(', ')}${loaded.inventory.jenkins ? ' and Jenkins' : ''}`)
    return { action: flags.resume ? 'resume' : 'rotate', journal: r.journal }
  }
}
