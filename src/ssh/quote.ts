import { LabctlError } from '../errors.js'

/**
 * Words that never need quoting in a POSIX shell (no globbing, expansion, tilde or brace meaning).
 * A leading '=' is excluded: zsh expands `=cmd` to a path.
 */
const SAFE_WORD = /^[A-Za-z0-9_\/.,:@%+-][A-Za-z0-9_\/.,:=@%+-]*$/

/** One argument as a single POSIX shell word: bare when harmless, else single-quoted ('\'' for embedded quotes). */
export function quoteArg(arg: string): string {
  if (arg.includes('\0')) {
    throw new LabctlError('a remote command argument contains a NUL byte, which cannot be passed through a shell', {
      code: 'SSH_BAD_ARGV',
      suggestion: 'this is a labctl bug: report it with the command that was run',
    })
  }
  if (SAFE_WORD.test(arg)) return arg
  return `'${arg.replace(/'/g, `'\\''`)}'`
}

/**
 * An argument array as one POSIX shell command line, each argument one word taken literally by the remote
 * shell: `$(…)`, backticks, `;`, `|`, quotes, spaces, globs and newlines are not interpreted.
 * The remote login shell must be POSIX (sh, bash, dash, zsh, ksh), as for `ssh host cmd` itself.
 */
export function shellQuote(args: readonly string[]): string {
  if (args.length === 0) {
    throw new LabctlError('empty remote command', { code: 'SSH_BAD_ARGV', suggestion: 'this is a labctl bug: report it' })
  }
  return args.map(quoteArg).join(' ')
}
