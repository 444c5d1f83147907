/**
 * What the credentials plugin's REST API speaks, as pure functions: store and credential paths,
 * the checks on what labctl sends (store spec, credential id, secret, description), the
 * StringCredentialsImpl XML document, and the config.xml / api/json / crumb answers it reads.
 * No I/O here; src/jenkins/client.ts makes the requests.
 */
import { XMLBuilder, XMLParser, XMLValidator } from 'fast-xml-parser'
import { UsageError, oneLine } from '../errors.js'
import { STRING_CREDENTIALS_CLASS, type JenkinsCredentialSummary } from './types.js'

// ---------------------------------------------------------------------------------------------
// Stores and paths

export type ParsedStore = { kind: 'system' | 'folder'; folder: string[]; label: string; path: string }

/** Validates a store spec and builds its path (`…/domain/_/`, relative to the Jenkins root). */
export function parseStore(spec: string): ParsedStore {
  if (spec === 'system') return { kind: 'system', folder: [], label: 'the system store', path: '/credentials/store/system/domain/_/' }
  const m = /^folder:(.+)$/.exec(spec)
  const parts = m ? m[1]!.split('/').filter((p) => p.length > 0) : []
  if (!m || parts.length === 0 || parts.some((p) => p === '.' || p === '..' || /[\u0000-\u001f]/.test(p))) {
    throw new UsageError(`bad Jenkins credentials store "${oneLine(spec, 80)}"`, {
      suggestion: 'Use "system" or "folder:<folder>/<subfolder>" (the folder\'s full name as in its URL /job/<folder>/job/<subfolder>)',
    })
  }
  const name = parts.join('/')
  return {
    kind: 'folder',
    folder: parts,
    label: `the store of folder ${name}`,
    path: `${parts.map((p) => `/job/${encodeURIComponent(p)}`).join('')}/credentials/store/folder/domain/_/`,
  }
}

/** `…/domain/_/credential/<id>/config.xml` (singular `credential`). */
export function credentialPath(store: ParsedStore, id: string): string {
  return `${store.path}credential/${encodeURIComponent(id)}/config.xml`
}

export function createPath(store: ParsedStore): string {
  return `${store.path}createCredentials`
}

export function listPath(store: ParsedStore): string {
  return `${store.path}api/json?tree=${encodeURIComponent('credentials[id,typeName,description]')}`
}

export const CRUMB_PATH = '/crumbIssuer/api/json'

// ---------------------------------------------------------------------------------------------
// Input checks

/**
 * Jenkins' rule for credential ids (BaseStandardCredentials): letters, digits, '_', '.', '-'.
 * "." and ".." pass that rule but are URL dot-segments: `credential/../config.xml` is the domain's
 * own config.xml, so a POST there would rewrite the domain, not a credential.
 */
export function checkCredentialId(id: string): string {
  if (!/^[A-Za-z0-9_.-]+$/.test(id) || id === '.' || id === '..') {
    throw new UsageError(`bad Jenkins credential id "${oneLine(id, 80)}"`, {
      suggestion: 'Jenkins credential ids use only letters, digits, "_", "." and "-" (and are not "." or "..")',
    })
  }
  return id
}

/** Characters XML 1.0 cannot carry at all (escaped or not): C0 controls but tab/LF/CR, U+FFFE/U+FFFF, lone surrogates. */
const NON_XML_CHAR = /[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u

export function checkSecret(secret: string): void {
  if (secret.trim().length === 0) throw new UsageError('the secret is empty', { suggestion: 'Give the secret value (from a file or stdin); Jenkins would store an empty secret as is' })
  if (NON_XML_CHAR.test(secret)) {
    throw new UsageError('the secret contains control characters that cannot be sent in XML', {
      suggestion: 'Check the secret source (a binary file? a stray escape sequence?)',
    })
  }
}

/** A description Jenkins could not parse would come back as a 500 "Oops!" after the fact. */
export function checkDescription(description: string | undefined): void {
  if (description !== undefined && NON_XML_CHAR.test(description)) {
    throw new UsageError('the credential description contains control characters that cannot be sent in XML', {
      suggestion: 'Give a description of printable text',
    })
  }
}

export function shortClass(className: string): string {
  return className.split('.').pop() ?? className
}

// ---------------------------------------------------------------------------------------------
// Documents sent

/**
 * The StringCredentialsImpl document. XMLBuilder escapes & < > " '; a CR is written as a character
 * reference because XML parsers turn a literal CR (or CRLF) into LF, which would change the secret.
 */
export function secretTextXml(c: { scope: string; id: string; description: string; secret: string }): string {
  const builder = new XMLBuilder({ format: true, indentBy: '  ', suppressEmptyNode: false })
  const xml = builder.build({ [STRING_CREDENTIALS_CLASS]: { scope: c.scope, id: c.id, description: c.description, secret: c.secret } }) as string
  return xml.replace(/\r/g, '&#13;')
}

// ---------------------------------------------------------------------------------------------
// Documents read. Each answers the value, or what was expected instead (for the error message).

export type Parsed<T> = { value: T } | { expected: string }

export type CurrentCredential = { className: string; scope: string; description: string }

/** A credential's config.xml (XStream output, secret redacted) → its class, scope and description. */
export function parseCredentialXml(body: string): Parsed<CurrentCredential> {
  if (XMLValidator.validate(body) !== true) return { expected: 'XML' }
  const parser = new XMLParser({ ignoreAttributes: true, ignoreDeclaration: true, ignorePiTags: true, parseTagValue: false, trimValues: false, htmlEntities: true })
  const doc = parser.parse(body) as Record<string, unknown>
  const root = Object.keys(doc).find((k) => k !== '#text')
  const fields = root ? doc[root] : undefined
  if (!root || typeof fields !== 'object' || fields === null) return { expected: 'a credential in XML' }
  const text = (v: unknown): string => (typeof v === 'string' ? v : '')
  const f = fields as Record<string, unknown>
  return { value: { className: root, scope: text(f.scope).trim(), description: text(f.description) } }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function parseJsonObject(body: string): Record<string, unknown> | undefined {
  try {
    const doc: unknown = JSON.parse(body)
    return isObject(doc) ? doc : undefined
  } catch {
    return undefined
  }
}

/** A store's `api/json?tree=credentials[id,typeName,description]`. */
export function parseCredentialList(body: string): Parsed<JenkinsCredentialSummary[]> {
  const doc = parseJsonObject(body)
  if (!doc) return { expected: 'JSON' }
  const list = doc.credentials
  if (!Array.isArray(list) || !list.every(isObject)) return { expected: 'a credentials list' }
  return {
    value: list.map((c) => ({
      id: typeof c.id === 'string' ? c.id : String(c.id ?? ''),
      typeName: typeof c.typeName === 'string' ? c.typeName : String(c.typeName ?? ''),
      description: typeof c.description === 'string' ? c.description : '',
    })),
  }
}

export type Crumb = { field: string; value: string }

/** `/crumbIssuer/api/json` → `{"crumb":"…","crumbRequestField":"Jenkins-Crumb"}`. */
export function parseCrumb(body: string): Parsed<Crumb> {
  const doc = parseJsonObject(body)
  if (!doc) return { expected: 'JSON' }
  if (typeof doc.crumb !== 'string' || typeof doc.crumbRequestField !== 'string' || doc.crumb === '' || /[\u0000-\u001f\u007f]/.test(doc.crumb) || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(doc.crumbRequestField)) {
    return { expected: 'a crumb' }
  }
  return { value: { field: doc.crumbRequestField, value: doc.crumb } }
}

/** The `name=value` parts of Set-Cookie headers, for the Cookie header of the requests that follow. */
export function sessionCookie(setCookie: string | string[] | undefined): string {
  const all = Array.isArray(setCookie) ? setCookie : setCookie ? [setCookie] : []
  return all
    .map((c) => c.split(';')[0]!.trim())
    .filter(Boolean)
    .join('; ')
}
