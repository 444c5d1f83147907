// The one redactor. Everything that may carry a secret on its way to an output (text, --json, JUnit,
// transcripts, journals, logs, error messages) passes through here, and every redaction looks the same.
// A peer may echo a secret in another spelling (HTML/XML-escaped, JSON-escaped, URL-encoded, flattened),
// so every spelling of every known secret is replaced, and the shapes that carry a secret by their form
// (TRIVY_TOKEN=…, --token …, a token or Authorization header) are replaced even when the value is unknown.

/** The one marker every redaction leaves behind. */
export const REDACTED = '[REDACTED]'

/** Shorter values are not redacted by value: replacing every "ab" would shred the text and hide nothing. */
const MIN_SECRET_LENGTH = 4

/** The spellings a value may take when a server echoes it: raw, XML/HTML-escaped, JSON, URL-encoded, flattened. */
export function spellings(value: string): string[] {
  const xml = value.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
  const forms = [
    value,
    xml,
    xml.replace(/"/g, '&quot;').replace(/'/g, '&apos;'),
    xml.replace(/"/g, '&quot;').replace(/'/g, '&#39;'),
    xml.replace(/"/g, '&#34;').replace(/'/g, '&#39;'),
    xml.replace(/\r/g, '&#13;'),
    JSON.stringify(value).slice(1, -1),
    encodeURIComponent(value),
    new URLSearchParams({ v: value }).toString().slice(2),
    value.replace(/\s+/g, ' ').trim(),
  ]
  return forms.filter((f) => f.trim().length >= MIN_SECRET_LENGTH)
}

/** Secrets recognised by their form, whatever their value. */
const PATTERNS: Array<[RegExp, string]> = [
  [/\b(TRIVY_TOKEN\s*=\s*)("[^"]*"|'[^']*'|[^\s"'<>&]+)/g, `$1${REDACTED}`],
  [/(^|\s)(--token(?:\s+|=))(?!-)(\S+)/g, `$1$2${REDACTED}`],
  [/\b((?:Trivy-Token|Authorization|X-Trivy-Token|Proxy-Authorization)\s*:\s*)(?:Bearer\s+|Basic\s+)?([^\s"'<>&,;]+)/gi, `$1${REDACTED}`],
]

/** Every spelling of every secret (longest first), then the secret-shaped forms, replaced by REDACTED. */
export function redactText(text: string, secrets: ReadonlyArray<string | undefined>): string {
  const forms = [...new Set(secrets.filter((s): s is string => typeof s === 'string' && s.length >= MIN_SECRET_LENGTH).flatMap(spellings))].sort((a, b) => b.length - a.length)
  let out = text
  for (const f of forms) out = out.split(f).join(REDACTED)
  for (const [re, rep] of PATTERNS) out = out.replace(re, rep)
  return out
}

const SECRET_KEY = /^(token|secret|password|apiToken|api_token|newToken|oldToken)$/i

/** Deep copy of a JSON value with secrets redacted in every string (and under secret-looking keys). */
export function redactJson<T>(value: T, secrets: ReadonlyArray<string | undefined>): T {
  const walk = (v: unknown, key?: string): unknown => {
    if (typeof v === 'string') return key && SECRET_KEY.test(key) && v ? REDACTED : redactText(v, secrets)
    if (Array.isArray(v)) return v.map((x) => walk(x))
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [redactText(k, secrets), walk(x, k)]))
    return v
  }
  return walk(value) as T
}

/** Redacts an error's message, stack, suggestion, details and causes in place; returns it. */
export function redactError<E>(err: E, secrets: ReadonlyArray<string | undefined>, depth = 0): E {
  if (typeof err === 'string') return redactText(err, secrets) as E
  if (!(err instanceof Error) || depth > 5) return err
  const r = (t: string): string => redactText(t, secrets)
  err.message = r(err.message)
  if (err.stack) err.stack = r(err.stack)
  const e = err as Error & { suggestion?: unknown; details?: unknown }
  if (typeof e.suggestion === 'string') Object.defineProperty(err, 'suggestion', { value: r(e.suggestion) })
  if (Array.isArray(e.details)) e.details = e.details.map((d) => (typeof d === 'string' ? r(d) : d))
  if (err.cause !== undefined) err.cause = redactError(err.cause, secrets, depth + 1)
  return err
}

/** A URL (or a text holding one) with any `user:password@` part replaced: user info is usually a credential. */
export function redactUserinfo(text: string): string {
  return text.replace(/\/\/[^@/\n]*@/g, `//${REDACTED}@`)
}
