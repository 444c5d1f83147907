import { createHash } from 'node:crypto'
import { statSync } from 'node:fs'
import { FileReadError, readBoundedText } from '../fs/read-bounded.js'
import { join } from 'node:path'
import { LabctlError } from '../errors.js'

export type TokenSource = { token: string; from: string; warnings: string[] }

/** A short fingerprint that identifies a token in logs and journals without revealing it. */
export const fingerprint = (token: string): string => `sha256:${createHash('sha256').update(token).digest('hex').slice(0, 12)}`

function readTokenFile(path: string, warnings: string[]): string {
  const mode = statSync(path).mode & 0o777
  if (mode & 0o077) warnings.push(`${path} is mode ${mode.toString(8).padStart(4, '0')}; token files should be 0600 (chmod 600 ${path})`)
  return readBoundedText(path, 'token').trim()
}

/**
 * The scanner token, from (in order) --token-file PATH or "-" for stdin, TRIVY_TOKEN, or the secrets
 * dir's `token` file. Never from a flag value: argv is visible to every local user.
 */
export function loadToken(opts: { tokenFile?: string | undefined; secretsDir: string; env?: NodeJS.ProcessEnv; readStdin?: () => string }): TokenSource {
  const env = opts.env ?? process.env
  const warnings: string[] = []
  let token: string
  let from = opts.tokenFile === '-' ? 'stdin' : opts.tokenFile || (env.TRIVY_TOKEN ? 'TRIVY_TOKEN' : join(opts.secretsDir, 'token'))
  try {
    if (opts.tokenFile === '-') {
      token = (opts.readStdin ?? (() => readBoundedText(0, 'token')))().trim()
      from = 'stdin'
    } else if (opts.tokenFile) {
      token = readTokenFile(opts.tokenFile, warnings)
      from = opts.tokenFile
    } else if (env.TRIVY_TOKEN) {
      token = env.TRIVY_TOKEN.trim()
      from = 'TRIVY_TOKEN'
    } else {
      const path = join(opts.secretsDir, 'token')
      token = readTokenFile(path, warnings)
      from = path
    }
  } catch (err) {
    const code = err instanceof FileReadError ? err.reason : (err as NodeJS.ErrnoException).code
    if (err instanceof FileReadError && code !== 'ENOENT') throw err
    throw new LabctlError(`no scanner token: ${code === 'ENOENT' ? `${from} does not exist` : `cannot read ${from} (${code ?? 'error'})`}`, {
      code: 'NO_TOKEN',
      suggestion: opts.tokenFile ? `check the --token-file path (${opts.tokenFile}), or pass - to read the token from stdin` : `put it in ${join(opts.secretsDir, 'token')} (mode 0600), set TRIVY_TOKEN, or pass --token-file PATH (or - for stdin)`,
    })
  }
  if (!token) throw new LabctlError(`the token from ${from} is empty`, { code: 'NO_TOKEN', suggestion: 'write the token into it (one line)' })
  if (token.includes('\0')) throw new LabctlError(`the token from ${from} contains a NUL byte (a binary file?)`, { code: 'BAD_TOKEN', suggestion: 'the token must be one line of printable text' })
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0008\u000b-\u001f\u007f]/.test(token)) throw new LabctlError(`the token from ${from} contains control characters`, { code: 'BAD_TOKEN', suggestion: 'the token must be one line of printable text' })
  if (/[\r\n]/.test(token)) throw new LabctlError(`the token from ${from} has more than one line`, { code: 'BAD_TOKEN', suggestion: 'the token must be a single line' })
  return { token, from, warnings }
}

/** Replace every occurrence of the given secrets in a text (for anything a peer may echo back). */
export function redact(text: string, secrets: Array<string | undefined>): string {
  let out = text
  for (const s of secrets) if (s && s.length >= 4) out = out.split(s).join('***')
  return out
}
