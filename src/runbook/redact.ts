// Secrets never reach a transcript or a state file: every value that looks like a token held in the
// secrets dir (token, token.prev, token.pending, …), the TRIVY_TOKEN of the environment, and anything
// written as TRIVY_TOKEN=… or as a token header is replaced before output is stored or printed.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'

export { REDACTED } from '../redact.js'

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

// The one redactor (src/redact.ts) does the work; this module only collects what to redact.
export { redactJson, redactText } from '../redact.js'
