import { createHash } from 'node:crypto'
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { LabctlError } from '../errors.js'

export type TokenSource = { token: string; from: string; warnings: string[] }

/** A short fingerprint that identifies a token in logs and journals without revealing it. */
export const fingerprint = (token: string): string => `sha256:${createHash('sha256').update(token).digest('hex').slice(0, 12)}`

function readTokenFile(path: string, warnings: string[]): string {
  const mode = statSync(path).mode & 0o777
  if (mode & 0o077) warnings.push(`${path} is mode ${mode.toString(8).padStart(4, '0')}; token files should be 0600 (chmod 600 ${path})`)
  return readFileSync(path, 'utf8').trim()
}

/**
 * The scanner token, from (in order) --token-file PATH or "-" for stdin, TRIVY_TOKEN, or the secrets
 * dir's `token` file. Never from a flag value: argv is visible to every local user.
 */
export function loadToken(opts: { tokenFile?: string | undefined; secretsDir: string; env?: NodeJS.ProcessEnv; readStdin?: () => string }): TokenSource {
  const env = opts.env ?? process.env
  const warnings: string[] = []
  let token: string
  let from: string
  try {
    if (opts.tokenFile === '-') {
      token = (opts.readStdin ?? (() => readFileSync(0, 'utf8')))().trim()
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
    const code = (err as NodeJS.ErrnoException).code
    throw new LabctlError(`no scanner token: ${code === 'ENOENT' ? `${join(opts.secretsDir, 'token')} does not exist` : `cannot read it (${code ?? 'error'})`}`, {
      code: 'NO_TOKEN',
      suggestion: `put it in ${join(opts.secretsDir, 'token')} (mode 0600), set TRIVY_TOKEN, or pass --token-file PATH (or - for stdin)`,
    })
  }
  if (!token) throw new LabctlError(`the token from ${from} is empty`, { code: 'NO_TOKEN', suggestion: 'write the token into it (one line)' })
  if (/[\r\n\0]/.test(token)) throw new LabctlError(`the token from ${from} has more than one line`, { code: 'BAD_TOKEN', suggestion: 'the token must be a single line' })
  return { token, from, warnings }
}

/** Replace every occurrence of the given secrets in a text (for anything a peer may echo back). */
export function redact(text: string, secrets: Array<string | undefined>): string {
  let out = text
  for (const s of secrets) if (s && s.length >= 4) out = out.split(s).join('***')
  return out
}
