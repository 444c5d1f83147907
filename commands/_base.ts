import { Command, Errors, Flags, type Interfaces } from '@oclif/core'
import { EXIT_CODE_TABLE, ExitCode, LabctlError, UsageError, escapeTerminal, oneLine, type ExitCodeValue } from '../src/errors.js'
import { loadInventory, type LoadedInventory } from '../src/inventory/load.js'
import type { Remote } from '../src/ssh/index.js'

/** A command's description with the exit-code table appended, so every --help shows it. */
export const describe = (text: string): string => `${text}\n\nEXIT CODES\n${EXIT_HELP}`

type PromptFlags = { yes?: boolean; 'no-prompt'?: boolean; json?: boolean }

export type BaseFlags<T extends typeof Command> = Interfaces.InferredFlags<(typeof LabctlCommand)['baseFlags'] & T['flags']>

const EXIT_HELP = EXIT_CODE_TABLE.map(([code, what]) => `  ${String(code).padEnd(4)}${what}`).join('\n')

/**
 * The base of every labctl command: global flags (all readable from LABCTL_* variables), the --json
 * envelope, one-line errors with a next step, the exit-code table and Ctrl-C handling.
 * T is the command's result: what run() returns is exactly what --json prints.
 */
export abstract class LabctlCommand<T> extends Command {
  static override enableJsonFlag = true

  /** The command's typed result; printed as the --json document, rendered as text otherwise. */
  public abstract override run(): Promise<T>

  static override baseFlags = {
    lab: Flags.string({ summary: 'Lab to work on: $XDG_CONFIG_HOME/labctl/labs/NAME.yaml.', env: 'LABCTL_LAB', helpGroup: 'GLOBAL' }),
    config: Flags.string({ summary: 'Inventory file to use (overrides --lab).', env: 'LABCTL_CONFIG', helpGroup: 'GLOBAL' }),
    yes: Flags.boolean({ char: 'y', summary: 'Answer yes to confirmations.', env: 'LABCTL_YES', helpGroup: 'GLOBAL' }),
    'no-prompt': Flags.boolean({ summary: 'Never prompt; fail where an answer would be needed.', env: 'LABCTL_NO_PROMPT', helpGroup: 'GLOBAL' }),
  }


  protected abort = new AbortController()
  private sigintCount = 0

  protected onSigint = (): void => {
    this.sigintCount += 1
    this.abort.abort(new LabctlError('interrupted', { code: 'INTERRUPTED', exitCode: ExitCode.Interrupted }))
    process.exitCode = ExitCode.Interrupted
    if (this.sigintCount > 1) process.exit(ExitCode.Interrupted)
    process.stderr.write('\nlabctl: interrupted; finishing the current step safely (Ctrl-C again to quit now)\n')
  }

  override async init(): Promise<void> {
    await super.init()
    process.on('SIGINT', this.onSigint)
  }

  private remotes: Remote[] = []

  /**
   * The run's SSH session (one connection per host, shared by every step), to pass to services as `remote`.
   * Closed in finally, whatever happens.
   */
  protected async openRemote(flags: { 'accept-new-host-key'?: boolean }): Promise<Remote> {
    const { Remote } = await import('../src/ssh/remote.js')
    const remote = new Remote({ acceptNewHostKey: Boolean(flags['accept-new-host-key']) })
    this.remotes.push(remote)
    return remote
  }

  protected override async finally(err: Error | undefined): Promise<void> {
    process.off('SIGINT', this.onSigint)
    for (const r of this.remotes.splice(0)) await r.close()
    return super.finally(err)
  }

  /** Whether prompts may be shown: a TTY on stdin and stderr, and not --no-prompt / --json / CI. */
  protected canPrompt(flags: { 'no-prompt'?: boolean; json?: boolean }): boolean {
    return Boolean(process.stdin.isTTY && process.stderr.isTTY && !flags['no-prompt'] && !flags.json && !process.env.CI)
  }

  /**
   * Asks a yes/no question before a state-changing step, on stderr (stdout carries results only); --yes
   * answers yes. With no terminal it is a usage error: WHY says what needs the confirmation.
   */
  protected async confirm(flags: PromptFlags, message: string, why: string, suggestion = 'rerun with --yes, or from a terminal'): Promise<boolean> {
    if (flags.yes) return true
    if (!this.canPrompt(flags)) throw new UsageError(`${why}: confirmation needed`, { suggestion })
    const { confirm } = await import('@inquirer/prompts')
    return confirm({ message, default: false }, { output: process.stderr })
  }

  /** confirm(), and a "no" stops the command with nothing changed. */
  protected async confirmOrStop(flags: PromptFlags, message: string, why: string): Promise<void> {
    if (!(await this.confirm(flags, message, why))) throw new UsageError('nothing was changed', { suggestion: 'rerun when ready' })
  }

  /** Asks for EXPECTED to be typed back (on stderr) before a destructive step; --yes skips it. */
  protected async typeBack(flags: PromptFlags, expected: string, message: string, why: string, suggestion: string): Promise<void> {
    if (flags.yes) return
    if (!this.canPrompt(flags)) throw new UsageError(`${why}: confirmation needed`, { suggestion })
    const { input } = await import('@inquirer/prompts')
    const typed = await input({ message }, { output: process.stderr })
    if (typed.trim() !== expected) throw new UsageError(`"${oneLine(typed, 80)}" is not ${expected}: nothing was changed`, { suggestion: `rerun and type ${expected} exactly` })
  }

  protected loadInventory(flags: { lab?: string | undefined; config?: string | undefined }): LoadedInventory {
    return loadInventory({ lab: flags.lab, config: flags.config })
  }

  /** Progress and notes: stderr, never stdout; silent under --json. */
  protected note(message: string): void {
    if (!this.jsonEnabled()) process.stderr.write(`${escapeTerminal(message)}\n`)
  }

  /** Checks ran and something failed: exit 3 after the result is printed. */
  protected markFailed(code: ExitCodeValue = ExitCode.ChecksFailed): void {
    if (!process.exitCode || process.exitCode === 0) process.exitCode = code
  }

  protected override async catch(err: Error & { exitCode?: number; oclif?: { exit?: number } }): Promise<unknown> {
    const known = err instanceof LabctlError
    let exit: number
    let code: string
    let suggestion: string | undefined
    if (known) {
      exit = err.exitCode
      code = err.code
      suggestion = err.suggestion
    } else if (err instanceof Errors.ExitError) {
      throw err
    } else if (err instanceof Errors.CLIError || (err as { oclif?: unknown }).oclif) {
      // oclif's own errors are parse/usage errors (unknown or repeated flag, missing argument, bad
      // value): labctl never calls this.error(), its own failures are LabctlErrors.
      exit = ExitCode.Usage
      code = exit === ExitCode.Usage ? 'USAGE' : 'FAILURE'
      suggestion = `see \`labctl ${this.id?.replaceAll(':', ' ') ?? ''} --help\``
    } else {
      exit = ExitCode.Failure
      code = 'INTERNAL'
      suggestion = 'this is a labctl bug: rerun with LABCTL_DEBUG=1 for the stack trace and report it'
    }
    const message = oneLine(err.message.replace(/^Error:\s*/, ''), 1000)
    if (this.jsonEnabled()) {
      const details = known && err.details.length ? { details: err.details } : {}
      this.logJson({ status: 'error', exitCode: exit, error: { code, message, ...details, ...(suggestion ? { suggestion } : {}) } })
    } else {
      process.stderr.write(`labctl: error: ${message}\n`)
      if (known) for (const d of err.details) process.stderr.write(`       ${oneLine(d, 1000)}\n`)
      if (suggestion) process.stderr.write(`  next: ${oneLine(suggestion, 1000)}\n`)
      if (!known && process.env.LABCTL_DEBUG && err.stack) process.stderr.write(`${err.stack}\n`)
    }
    process.exitCode = exit
    return undefined
  }
}
