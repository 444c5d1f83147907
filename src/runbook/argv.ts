// Command lines in runbooks: `run: trivy validate --only dns,tls` reads like what an operator types.
// Split like a shell would (single and double quotes, backslash), never expanded or run by a shell.
import { UsageError } from '../errors.js'
import { quoteArg } from '../ssh/quote.js'


/** Splits a command string into an argv; a leading `labctl` is dropped (the runbook always runs labctl). */
export function splitCommand(cmd: string | string[]): string[] {
  const argv = Array.isArray(cmd) ? [...cmd] : tokenize(cmd)
  if (argv[0] === 'labctl') argv.shift()
  return argv
}

function tokenize(s: string): string[] {
  const out: string[] = []
  let cur = ''
  let has = false
  let quote: '"' | "'" | undefined
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!
    if (quote) {
      if (c === quote) quote = undefined
      else if (c === '\\' && quote === '"' && i + 1 < s.length) cur += s[++i]
      else cur += c
      continue
    }
    if (c === '"' || c === "'") {
      quote = c
      has = true
    } else if (c === '\\' && i + 1 < s.length) {
      cur += s[++i]
      has = true
    } else if (/\s/.test(c)) {
      if (has) out.push(cur)
      cur = ''
      has = false
    } else {
      cur += c
      has = true
    }
  }
  if (quote) {
    throw new UsageError(`unterminated ${quote === '"' ? 'double' : 'single'} quote in the command`, {
      suggestion: `Close the quote in the step's run: line, or escape a literal quote with a backslash`,
    })
  }
  if (has) out.push(cur)
  return out
}

/** Shows an argv as one copy-pasteable line. */
export function showCommand(argv: string[]): string {
  return argv.map(quoteArg).join(' ')
}

const VAR_RE = /\{\{\s*([A-Za-z][A-Za-z0-9_-]*)\s*\}\}/g

/** Fills {{name}} placeholders; unknown ones are left as they are. */
export function fillTemplate(text: string, vars: Record<string, string | undefined>): string {
  return text.replace(VAR_RE, (m, name: string) => vars[name] ?? m)
}

/** The placeholders a text uses that have no value. */
export function missingVars(text: string, vars: Record<string, string | undefined>): string[] {
  return [...text.matchAll(VAR_RE)].map((m) => m[1]!).filter((n) => vars[n] === undefined)
}
