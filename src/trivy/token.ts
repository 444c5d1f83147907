// The token module: every place labctl makes, identifies, reads or writes the scanner token uses these.
import { createHash, randomBytes } from 'node:crypto'
import { statSync } from 'node:fs'
import { FileReadError, readBoundedText } from '../fs/read-bounded.js'
import { join } from 'node:path'
import { LabctlError } from '../errors.js'

export type TokenSource = { token: string; from: string; warnings: string[] }

/** A new token: 32 random bytes, URL-safe base64 (43 characters). */
export const generateToken = (): string => randomBytes(32).toString('base64url')

/** A short fingerprint that identifies a token in logs and journals without revealing it. */
export const fingerprint = (token: string): string => `sha256:${createHash('sha256').update(token).digest('hex').slice(0, 12)}`

/** A warning when a file holding a secret can be read by others (the file is still used). */
export function modeWarning(path: string): string | undefined {
  const mode = statSync(path).mode & 0o777
  return mode & 0o077 ? `${path} is mode ${mode.toString(8).padStart(4, '0')}; token files should be 0600 (chmod 600 ${path})` : undefined
}

/** The one line a token must be: not empty, no line break, NUL or other whitespace inside. */
export function checkTokenText(raw: string, from: string): string {
  const token = raw.trim()
  if (!token) throw new LabctlError(`the token from ${from} is empty`, { code: 'NO_TOKEN', suggestion: 'write the token into it (one line)' })
  if (token.includes('\0')) throw new LabctlError(`the token from ${from} contains a NUL byte`, { code: 'BAD_TOKEN', suggestion: 'write the token as one line of text' })
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(token)) throw new LabctlError(`the token from ${from} contains control characters`, { code: 'BAD_TOKEN', suggestion: 'write the token as one line of printable text' })
  if (/[\r\n]/.test(token)) throw new LabctlError(`the token from ${from} has more than one line`, { code: 'BAD_TOKEN', suggestion: 'the token must be a single line' })
  if (/\s/.test(token)) throw new LabctlError(`the token from ${from} contains whitespace`, { code: 'BAD_TOKEN', suggestion: 'the token must be a single word on one line' })
  return token
}

/** A token file: its one-line token, and a warning when its mode lets others read it. Errors as they come (ENOENT, …). */
export function readTokenFile(path: string): { token: string; warnings: string[] } {
  const warning = modeWarning(path)
  return { token: checkTokenText(readBoundedText(path, 'token'), path), warnings: warning ? [warning] : [] }
}

/**
 * The scanner token, from (in order) --token-file PATH or "-" for stdin, TRIVY_TOKEN, or the secrets
 * dir's `token` file. Never from a flag value: argv is visible to every local user.
 */
export function loadToken(opts: { tokenFile?: string | undefined; secretsDir: string; env?: NodeJS.ProcessEnv; readStdin?: () => string }): TokenSource {
  const env = opts.env ?? process.env
  const warnings: string[] = []
  let raw: string
  let from: string
  try {
    if (opts.tokenFile === '-') {
      raw = (opts.readStdin ?? (() => readBoundedText(0, 'token')))()
      from = 'stdin'
    } else if (opts.tokenFile) {
      from = opts.tokenFile
      const w = modeWarning(from)
      if (w) warnings.push(w)
      raw = readBoundedText(from, 'token')
    } else if (env.TRIVY_TOKEN) {
      raw = env.TRIVY_TOKEN
      from = 'TRIVY_TOKEN'
    } else {
      from = join(opts.secretsDir, 'token')
      const w = modeWarning(from)
      if (w) warnings.push(w)
      raw = readBoundedText(from, 'token')
    }
  } catch (err) {
    // Too large, a device, a silent FIFO: the bounded reader's own message (exit 2, names the file).
    if (err instanceof FileReadError && err.reason !== 'ENOENT') throw err
    const code = err instanceof FileReadError ? err.reason : (err as NodeJS.ErrnoException).code
    const path = opts.tokenFile && opts.tokenFile !== '-' ? opts.tokenFile : join(opts.secretsDir, 'token')
    throw new LabctlError(`no scanner token: ${code === 'ENOENT' ? `${path} does not exist` : `cannot read ${path} (${code ?? 'error'})`}`, {
      code: 'NO_TOKEN',
      suggestion: opts.tokenFile ? `check the --token-file path (${opts.tokenFile}), or pass - to read the token from stdin` : `put it in ${join(opts.secretsDir, 'token')} (mode 0600), set TRIVY_TOKEN, or pass --token-file PATH (or - for stdin)`,
    })
  }
  return { token: checkTokenText(raw, from), from, warnings }
}

// ---------------------------------------------------------------- the server's EnvironmentFile

const TOKEN_LINE = /^\s*(?:export\s+)?TRIVY_TOKEN=(.*)$/

/** The env-file line that carries the token. */
export const envTokenLine = (token: string): string => `TRIVY_TOKEN=${token}`

/** The token an env file holds (its first TRIVY_TOKEN= line), if any. */
export function envFileToken(text: string | undefined): string | undefined {
  for (const line of (text ?? '').split('\n')) {
    const m = TOKEN_LINE.exec(line)
    if (m) return m[1]!.trim().replace(/^(["'])(.*)\1$/, '$2') || undefined
  }
  return undefined
}

/** The env file with its TRIVY_TOKEN= line(s) set to TOKEN (one line; appended when absent); other lines kept. */
export function withEnvToken(text: string, token: string): string {
  let found = false
  const out: string[] = []
  for (const line of text.split('\n')) {
    if (!TOKEN_LINE.test(line)) out.push(line)
    else if (!found) {
      found = true
      out.push(envTokenLine(token))
    }
  }
  if (!found) {
    if (out.length && out[out.length - 1] === '') out.pop()
    out.push(envTokenLine(token), '')
  }
  return out.join('\n')
}
