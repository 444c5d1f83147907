// Exec: one command on one channel of an open connection. The argv is quoted into one POSIX command
// line, wrapped in `sudo -n` when the step needs privileges and in coreutils `timeout` (the timeout is
// enforced on the host), stdin carries secrets, stdout can be streamed, Ctrl-C kills the command.
import type { ClientChannel } from 'ssh2'
import { InterruptedError, LabctlError, oneLine } from '../errors.js'
import { type Conn, lostError, orLost } from './connect.js'
import { sudoFailure } from './failures.js'
import { shellQuote } from './quote.js'

export type RunOptions = {
  /**
   * The step needs privileges: run through `sudo -n`, unless logged in as root or the inventory host says
   * `sudo: false` (then the command runs as the login user).
   */
  sudo?: boolean
  /** Run as this user through `sudo -n -u USER`. */
  user?: string
  /** Sent on the command's stdin, then EOF: the only way a secret reaches a remote command. */
  stdin?: string | Buffer
  /** Command timeout (default: the session's commandTimeoutMs, 5 min); enforced on the host with timeout(1). */
  timeoutMs?: number
  /** Throw a LabctlError when the command exits non-zero. */
  check?: boolean
  signal?: AbortSignal
  /** Values that must never appear in the argv (refused as a labctl bug when they do). */
  secrets?: readonly string[]
  /** Stop and fail when stdout + stderr exceed this (default 64 MiB). */
  maxOutputBytes?: number
  /** Stream stdout here as it arrives instead of collecting it (e.g. `journalctl -f`); RunResult.stdout is then empty. */
  onStdout?: (chunk: Buffer) => void
}

export type RunResult = {
  /** Exit status; 128+N when killed by signal N (the signal name is in `signal`). */
  code: number
  signal?: string
  stdout: string
  stderr: string
  /** The command line (quoted argv, with its sudo prefix; the timeout(1) wrapper labctl adds is not shown). */
  command: string
}

export type ExecOutcome = { code: number; signal?: string; stdout: Buffer; stderr: Buffer; command: string }

/** Session-wide defaults for commands. */
export type ExecDefaults = {
  commandTimeoutMs?: number | undefined
  /** Commands run at once on one connection (sshd's MaxSessions defaults to 10). */
  maxChannelsPerConnection?: number | undefined
  log?: ((line: string) => void) | undefined
}

/** Seconds between timeout(1)'s SIGTERM and its SIGKILL. */
const KILL_AFTER_S = 5
const DEFAULT_COMMAND_TIMEOUT_MS = 300_000
const DEFAULT_MAX_OUTPUT = 64 * 1024 * 1024
/** The shell saying it has no `timeout` (not GNU timeout saying the command is missing). */
const TIMEOUT_MISSING = /(^|[\s:])timeout: (command )?not found/m
const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGILL: 4, SIGABRT: 6, SIGFPE: 8, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15 }

/**
 * Sends SIGKILL to a remote command (an SSH "signal" channel request; OpenSSH's sshd kills the process group).
 * ssh2's ClientChannel.signal() silently does nothing once stdin is closed, which it always is here, so the
 * request goes through the channel's protocol object directly.
 */
function killRemote(stream: ClientChannel): void {
  const ch = stream as unknown as { outgoing?: { id?: number; state?: string }; _client?: { _protocol?: { signal(id: number, sig: string): void } } }
  try {
    if (ch.outgoing?.id !== undefined && ch.outgoing.state !== 'closed') ch._client?._protocol?.signal(ch.outgoing.id, 'KILL')
    else stream.signal('KILL')
  } catch {
    /* channel already gone */
  }
}

/** Waits for a free channel on C (at most MAX at once); returns its release function. */
async function acquire(c: Conn, max: number): Promise<() => void> {
  while (c.active >= max && !c.closed) await new Promise<void>((r) => c.waiting.push(r))
  c.active++
  let released = false
  return () => {
    if (released) return
    released = true
    c.active--
    c.waiting.shift()?.()
  }
}

/** Runs COMMAND on one channel; LOCALDEADLINEMS is the backstop after which the channel is abandoned. */
async function execChannel(c: Conn, command: string, shown: string, o: RunOptions, localDeadlineMs: number, d: ExecDefaults): Promise<Omit<ExecOutcome, 'command'>> {
  if (o.signal?.aborted) throw new InterruptedError()
  const release = await acquire(c, d.maxChannelsPerConnection ?? 6)
  if (c.closed) {
    release()
    throw lostError(c, 'before the command could start')
  }
  const maxBytes = o.maxOutputBytes ?? DEFAULT_MAX_OUTPUT
  d.log?.(`ssh: ${c.target.label}: ${shown}`)
  try {
    const stream = await orLost(c, new Promise<ClientChannel>((resolve, reject) => {
      c.client.exec(command, (err, s) => {
        if (err) {
          reject(
            new LabctlError(`cannot start a command on ${c.target.label}: ${oneLine(err.message, 160)}`, {
              code: 'SSH_EXEC_FAILED',
              suggestion: "check sshd's MaxSessions and log on the host",
              cause: err,
            }),
          )
        } else resolve(s)
      })
    }), `before the command could start: ${shown}`)
    return await new Promise((resolve, reject) => {
      const out: Buffer[] = []
      const err: Buffer[] = []
      let bytes = 0
      let code: number | null | undefined
      let signal: string | undefined
      let done = false
      const finish = (e?: LabctlError): void => {
        if (done) return
        done = true
        clearTimeout(timer)
        o.signal?.removeEventListener('abort', onAbort)
        c.client.removeListener('close', onLost)
        if (e) {
          killRemote(stream)
          stream.close()
          return reject(e)
        }
        const exit = code ?? (signal ? 128 + (SIGNALS[signal] ?? 0) : 255)
        resolve({ code: exit, ...(signal ? { signal } : {}), stdout: Buffer.concat(out), stderr: Buffer.concat(err) })
      }
      const timer = setTimeout(() => {
        finish(
          new LabctlError(`command did not finish within ${localDeadlineMs} ms on ${c.target.label} and could not be stopped there: ${shown}`, {
            code: 'SSH_COMMAND_TIMEOUT',
            suggestion: `it may still be running: check on ${c.target.host} (ps) before rerunning`,
          }),
        )
      }, localDeadlineMs)
      const onAbort = (): void => finish(new InterruptedError())
      o.signal?.addEventListener('abort', onAbort, { once: true })
      const onLost = (): void => finish(lostError(c, `while running: ${shown}`))
      c.client.once('close', onLost)
      const collect =
        (into: Buffer[]) =>
        (chunk: Buffer): void => {
          bytes += chunk.length
          if (bytes > maxBytes) {
            finish(
              new LabctlError(`command printed more than ${maxBytes} bytes on ${c.target.label}: ${shown}`, {
                code: 'SSH_OUTPUT_TOO_LARGE',
                suggestion: 'this is a labctl bug or a runaway command: report it',
              }),
            )
            return
          }
          into.push(chunk)
        }
      stream.on('data', o.onStdout ?? collect(out))
      stream.stderr.on('data', collect(err))
      stream.on('exit', (exitCode: number | null, sig?: string) => {
        code = exitCode
        if (sig) signal = sig
      })
      stream.on('close', () => finish())
      stream.on('error', () => undefined)
      if (o.stdin !== undefined) stream.end(o.stdin)
      else stream.end()
    })
  } finally {
    release()
  }
}

/** The argv with its sudo prefix: `sudo -n -u USER` for another user, `sudo -n` for privileges unless root. */
export function sudoArgv(loginUser: string, argv: readonly string[], o: Pick<RunOptions, 'sudo' | 'user'>): string[] {
  if (o.user !== undefined && o.user !== loginUser) return ['sudo', '-n', '-u', o.user, '--', ...argv]
  if (o.sudo && loginUser !== 'root') return ['sudo', '-n', '--', ...argv]
  return [...argv]
}

/**
 * Runs ARGV on C: sudo wrapping, the remote `timeout` wrapper, and the mapping of sudo's and timeout's own
 * failures. The command timeout is enforced on the host by coreutils `timeout` (TERM, then KILL 5 s later):
 * an SSH "signal" request cannot do it, OpenSSH ignores those on root logins (no privilege separation child).
 * `o.sudo` is taken as decided (the inventory's `sudo: false` already applied).
 */
export async function runArgv(c: Conn, argv: readonly string[], o: RunOptions, d: ExecDefaults): Promise<ExecOutcome> {
  for (const s of o.secrets ?? []) {
    if (s !== '' && argv.some((a) => a.includes(s))) {
      throw new LabctlError('refusing to put a secret in a remote command line (it would show in ps and logs)', {
        code: 'SSH_SECRET_IN_ARGV',
        suggestion: 'this is a labctl bug: pass the secret on stdin or write it with SFTP',
      })
    }
  }
  const timeoutMs = o.timeoutMs ?? d.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS
  const inner = sudoArgv(c.target.user, argv, o)
  const command = shellQuote(inner)
  const seconds = String(Number(Math.max(timeoutMs / 1000, 0.001).toFixed(3)))
  const sent = shellQuote(['timeout', '-k', String(KILL_AFTER_S), seconds, ...inner])
  const shown = oneLine(command, 160)
  const started = Date.now()
  const res = await execChannel(c, sent, shown, o, timeoutMs + KILL_AFTER_S * 1000 + 3000, d)
  const elapsed = Date.now() - started
  if ((res.code === 124 || res.code === 137) && elapsed >= timeoutMs - 50) {
    throw new LabctlError(`command timed out after ${timeoutMs} ms on ${c.target.label}: ${shown}`, {
      code: 'SSH_COMMAND_TIMEOUT',
      suggestion: `it was stopped on the host (SIGTERM${res.code === 137 ? ', then SIGKILL' : ''}); check ${c.target.host} (load, a hung mount, a lock) and rerun`,
    })
  }
  const stderr = res.code === 0 ? '' : res.stderr.toString('utf8')
  if (res.code === 127 && TIMEOUT_MISSING.test(stderr)) {
    throw new LabctlError(`coreutils "timeout" is missing on ${c.target.label}`, {
      code: 'SSH_NO_TIMEOUT',
      suggestion: `install coreutils on ${c.target.host}; labctl uses timeout(1) to stop remote commands that hang`,
    })
  }
  if (inner[0] === 'sudo' && res.code !== 0) {
    const e = sudoFailure(stderr, { host: c.target.label, user: c.target.user, exitCode: res.code })
    if (e) throw e
  }
  return { ...res, command }
}

/** An outcome as text; with CHECK, a non-zero exit is a LabctlError naming the command and its output. */
export function toRunResult(c: Conn, argv: readonly string[], res: ExecOutcome, check: boolean | undefined): RunResult {
  const result: RunResult = {
    code: res.code,
    ...(res.signal ? { signal: res.signal } : {}),
    stdout: res.stdout.toString('utf8'),
    stderr: res.stderr.toString('utf8'),
    command: res.command,
  }
  if (check && result.code !== 0) {
    throw new LabctlError(
      `\`${oneLine(argv.join(' '), 120)}\` failed on ${c.target.label} (exit ${result.code}${result.signal ? `, ${result.signal}` : ''}): ${oneLine(result.stderr || result.stdout, 200) || 'no output'}`,
      { code: 'SSH_COMMAND_FAILED', suggestion: `run it by hand on ${c.target.host} to see the full output` },
    )
  }
  return result
}
