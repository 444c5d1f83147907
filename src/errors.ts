/** Exit codes: the contract with scripts and Jenkins. Documented in the README and in --help. */
export const ExitCode = {
  Ok: 0,
  /** labctl could not do its job (unreachable host, missing prerequisite, I/O error, bug). */
  Failure: 1,
  /** Usage: bad flags, bad arguments, a broken inventory. */
  Usage: 2,
  /** Checks ran and at least one failed. */
  ChecksFailed: 3,
  /** Interrupted (SIGINT / Ctrl-C). */
  Interrupted: 130,
} as const
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode]

export const EXIT_CODE_TABLE: ReadonlyArray<[number, string]> = [
  [ExitCode.Ok, 'success (every check passed)'],
  [ExitCode.Failure, 'labctl could not do its job (host unreachable, prerequisite missing, I/O error)'],
  [ExitCode.Usage, 'usage error: bad flag or argument, broken inventory'],
  [ExitCode.ChecksFailed, 'checks ran and at least one failed'],
  [ExitCode.Interrupted, 'interrupted (Ctrl-C)'],
  [127, 'unknown command (a did-you-mean suggestion is printed)'],
]

/**
 * An expected failure: one line saying what is wrong, plus what to do next.
 * Everything that is not a LabctlError is a bug and is shown with its stack (LABCTL_DEBUG=1).
 */
export class LabctlError extends Error {
  readonly exitCode: ExitCodeValue
  readonly code: string
  readonly suggestion?: string
  /** Further lines shown under the message (e.g. every problem in an inventory). */
  details: string[] = []

  constructor(message: string, opts: { code?: string; exitCode?: ExitCodeValue; suggestion?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.name = 'LabctlError'
    this.code = opts.code ?? 'LABCTL_FAILURE'
    this.exitCode = opts.exitCode ?? ExitCode.Failure
    if (opts.suggestion !== undefined) this.suggestion = opts.suggestion
  }
}

export class UsageError extends LabctlError {
  constructor(message: string, opts: { code?: string; suggestion?: string } = {}) {
    super(message, { ...opts, code: opts.code ?? 'USAGE', exitCode: ExitCode.Usage })
    this.name = 'UsageError'
  }
}

export class InterruptedError extends LabctlError {
  constructor(message = 'interrupted') {
    super(message, { code: 'INTERRUPTED', exitCode: ExitCode.Interrupted })
    this.name = 'InterruptedError'
  }
}

// Characters that would steer a terminal or reorder what it shows: C0/C1 controls (ESC sequences, BEL,
// backspace, CR), DEL, the bidirectional overrides/isolates (Trojan Source) and zero-width marks.
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2069\ufeff]/g

/**
 * Text from input (files, flags, peers) made safe for a terminal: every control, bidi or zero-width
 * character is shown as an escape (\u{1b}) instead of acting. Tabs and newlines are kept.
 */
export function escapeTerminal(text: string): string {
  return text.replace(UNSAFE, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`)
}

/** One line, no newlines, every control and bidi character escaped: safe to print whatever a peer sent us. */
export function oneLine(text: string, max = 300): string {
  const flat = escapeTerminal(text.replace(/[\r\n\t]+/g, ' ')).replace(/\s+/g, ' ').trim()
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message
  return String(err)
}
