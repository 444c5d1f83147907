// Secrets never reach a transcript or a state file: every value that looks like a token held in the
// secrets dir (token, token.prev, token.pending, …), the TRIVY_TOKEN of the environment, and anything
// written as TRIVY_TOKEN=… or as a token header is replaced before output is stored or printed.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'

export const REDACTED = '[REDACTED]'

/** Token-like values from the secrets dir (small single-line files) and the environment. */
export function collectSecrets(secretsDir: string | undefined, env: NodeJS.ProcessEnv = process.env): string[] {
  const out = new Set<string>()
  const add = (v: string | undefined): void => {
    const t = v?.trim()
    if (t && t.length >= 8 && !/\s/.test(t)) out.add(t)
  }
  add(env.TRIVY_TOKEN)
  if (secretsDir) {
    let names: string[] = []
    try {
      names = readdirSync(secretsDir)
    } catch {
      names = []
    }
    for (const n of names) {
      const p = join(secretsDir, n)
      try {
        const st = statSync(p)
        if (!st.isFile() || st.size > 4096) continue
        const text = readFileSync(p, 'utf8')
        const lines = text.split('\n').filter((l) => l.trim())
        if (lines.length === 1) add(lines[0])
      } catch {
        // unreadable: nothing to redact from it
      }
    }
  }
  return [...out].sort((a, b) => b.length - a.length)
}

const PATTERNS: Array<[RegExp, string]> = [
  [/\b(TRIVY_TOKEN\s*=\s*)("[^"]*"|'[^']*'|\S+)/g, `$1${REDACTED}`],
  [/(^|\s)(--token(?:\s+|=))(?!-)(\S+)/g, `$1$2${REDACTED}`],
  [/\b((?:Trivy-Token|Authorization|X-Trivy-Token)\s*:\s*)(?:Bearer\s+|Basic\s+)?(\S+)/gi, `$1${REDACTED}`],
]

export function redactText(text: string, secrets: readonly string[]): string {
  let out = text
  for (const s of secrets) if (s) out = out.split(s).join(REDACTED)
  for (const [re, rep] of PATTERNS) out = out.replace(re, rep)
  return out
}

const SECRET_KEY = /^(token|secret|password|apiToken|api_token|newToken|oldToken)$/i

/** Deep copy of a JSON value with secrets redacted in every string (and under secret-looking keys). */
export function redactJson<T>(value: T, secrets: readonly string[]): T {
  const walk = (v: unknown, key?: string): unknown => {
    if (typeof v === 'string') return key && SECRET_KEY.test(key) && v ? REDACTED : redactText(v, secrets)
    if (Array.isArray(v)) return v.map((x) => walk(x))
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x, k)]))
    return v
  }
  return walk(value) as T
}
