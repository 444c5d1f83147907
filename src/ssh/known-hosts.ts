// known_hosts: OpenSSH's format, read and appended to. Plain entries (comma lists, `*`/`?` wildcards,
// `!negation`, `[host]:port`), hashed entries (`|1|salt|hmac`) and the @revoked marker are understood;
// @cert-authority lines are skipped (labctl does not do host certificates).
import { createHash, createHmac, randomBytes } from 'node:crypto'
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, statSync, writeSync } from 'node:fs'
import { dirname } from 'node:path'
import { FileReadError, readBounded, readBoundedText } from '../fs/read-bounded.js'

export type HostKeyInfo = {
  /** Key type as in known_hosts: ssh-ed25519, ecdsa-sha2-nistp256, ssh-rsa, … */
  type: string
  /** Short label: ED25519, ECDSA, RSA, … */
  label: string
  /** OpenSSH's SHA256 fingerprint: `SHA256:` + unpadded base64. */
  fingerprint: string
  /** The key blob, base64 (the third field of a known_hosts line). */
  base64: string
}

export type KnownHostEntry = {
  file: string
  line: number
  marker?: 'revoked'
  key: HostKeyInfo
}

export type HostKeyVerdict =
  | { status: 'ok'; entry: KnownHostEntry }
  | { status: 'unknown'; offered: HostKeyInfo }
  | { status: 'changed'; offered: HostKeyInfo; known: KnownHostEntry[] }
  | { status: 'revoked'; offered: HostKeyInfo; entry: KnownHostEntry }

const LABELS: Record<string, string> = {
  'ssh-ed25519': 'ED25519',
  'ssh-rsa': 'RSA',
  'ssh-dss': 'DSA',
  'ecdsa-sha2-nistp256': 'ECDSA',
  'ecdsa-sha2-nistp384': 'ECDSA',
  'ecdsa-sha2-nistp521': 'ECDSA',
  'sk-ssh-ed25519@openssh.com': 'ED25519-SK',
  'sk-ecdsa-sha2-nistp256@openssh.com': 'ECDSA-SK',
}

/** The type string at the start of an SSH public key blob, or undefined if the blob is malformed. */
export function blobType(blob: Buffer): string | undefined {
  if (blob.length < 4) return undefined
  const len = blob.readUInt32BE(0)
  if (len === 0 || len > 64 || blob.length < 4 + len) return undefined
  return blob.subarray(4, 4 + len).toString('latin1')
}

export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`
}

export function hostKeyInfo(blob: Buffer): HostKeyInfo {
  const type = blobType(blob) ?? 'unknown'
  return { type, label: LABELS[type] ?? type, fingerprint: fingerprint(blob), base64: blob.toString('base64') }
}

/** "host" for port 22, else "[host]:port": the name OpenSSH records and looks up. Lower-cased like OpenSSH. */
export function knownHostName(host: string, port: number): string {
  const h = host.toLowerCase()
  return port === 22 ? h : `[${h}]:${port}`
}

function wildcardRegex(pattern: string): RegExp {
  const re = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')
  return new RegExp(`^${re}$`, 'i')
}

function hashedMatches(entry: string, name: string): boolean {
  const m = /^\|1\|([^|]+)\|([^|]+)$/.exec(entry)
  if (!m) return false
  const salt = Buffer.from(m[1]!, 'base64')
  const want = Buffer.from(m[2]!, 'base64')
  const got = createHmac('sha1', salt).update(name).digest()
  return got.length === want.length && got.equals(want)
}

/** Whether the host field of a known_hosts line (comma list, wildcards, negations, or one hashed name) matches NAME. */
export function hostFieldMatches(field: string, name: string): boolean {
  if (field.startsWith('|')) return hashedMatches(field, name)
  let matched = false
  for (const raw of field.split(',')) {
    if (raw === '') continue
    const negated = raw.startsWith('!')
    const pattern = negated ? raw.slice(1) : raw
    if (wildcardRegex(pattern).test(name)) {
      if (negated) return false
      matched = true
    }
  }
  return matched
}

/** Every key recorded for any of NAMES (already in knownHostName form) in the given files; missing files are skipped. */
export function lookupKnownHosts(files: readonly string[], names: readonly string[]): KnownHostEntry[] {
  const out: KnownHostEntry[] = []
  for (const file of files) {
    let text: string
    try {
      text = readBoundedText(file, 'known-hosts')
    } catch (err) {
      if (err instanceof FileReadError && err.reason !== 'ENOENT') throw err
      continue
    }
    text.split('\n').forEach((rawLine, i) => {
      const line = rawLine.trim()
      if (line === '' || line.startsWith('#')) return
      let fields = line.split(/\s+/)
      let marker: 'revoked' | undefined
      if (fields[0]!.startsWith('@')) {
        if (fields[0] === '@revoked') marker = 'revoked'
        else return // @cert-authority and unknown markers
        fields = fields.slice(1)
      }
      const [hostField, type, b64] = fields
      if (!hostField || !type || !b64) return
      const blob = Buffer.from(b64, 'base64')
      if (blobType(blob) !== type) return
      // A revoked key is revoked for every host when its host field is "*"; the field is still checked.
      if (!names.some((n) => hostFieldMatches(hostField, n))) return
      out.push({ file, line: i + 1, ...(marker ? { marker } : {}), key: hostKeyInfo(blob) })
    })
  }
  return out
}

/**
 * Checks an offered host key against known_hosts: `ok` when a recorded key for one of NAMES equals it,
 * `revoked` when it is marked @revoked, `changed` when keys are recorded for the host but none equals it
 * (whatever their type: labctl prefers the recorded key types during key exchange), `unknown` otherwise.
 */
export function verifyHostKey(files: readonly string[], names: readonly string[], blob: Buffer): HostKeyVerdict {
  const offered = hostKeyInfo(blob)
  const entries = lookupKnownHosts(files, names)
  const revoked = entries.find((e) => e.marker === 'revoked' && e.key.base64 === offered.base64)
  if (revoked) return { status: 'revoked', offered, entry: revoked }
  const known = entries.filter((e) => e.marker === undefined)
  const same = known.find((e) => e.key.base64 === offered.base64)
  if (same) return { status: 'ok', entry: same }
  if (known.length > 0) return { status: 'changed', offered, known }
  return { status: 'unknown', offered }
}

const RSA_ALGOS = ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa']
const ALL_ALGOS = ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', ...RSA_ALGOS]

/**
 * Host key algorithms for the key exchange, those of the keys already recorded for the host first (as OpenSSH
 * does), so a server with several host keys presents the one we know rather than one we would call "changed".
 */
export function preferredHostKeyAlgorithms(knownTypes: readonly string[]): string[] {
  const first: string[] = []
  for (const t of knownTypes) {
    for (const algo of t === 'ssh-rsa' ? RSA_ALGOS : [t]) if (ALL_ALGOS.includes(algo) && !first.includes(algo)) first.push(algo)
  }
  return [...first, ...ALL_ALGOS.filter((a) => !first.includes(a))]
}

/**
 * Appends one line "name1,name2 type base64" to FILE (created 0600, its directory 0700, if missing),
 * or a hashed `|1|` line per name when HASH is set.
 */
export function appendKnownHost(file: string, names: readonly string[], blob: Buffer, opts: { hash?: boolean } = {}): string[] {
  const info = hostKeyInfo(blob)
  const lines = opts.hash
    ? names.map((n) => {
        const salt = randomBytes(20)
        return `|1|${salt.toString('base64')}|${createHmac('sha1', salt).update(n).digest('base64')} ${info.type} ${info.base64}`
      })
    : [`${names.join(',')} ${info.type} ${info.base64}`]
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 })
  let prefix = ''
  if (existsSync(file) && statSync(file).size > 0) {
    const text = readBounded(file, 'known-hosts')
    if (text[text.length - 1] !== 0x0a) prefix = '\n'
  }
  const fd = openSync(file, 'a', 0o600)
  try {
    writeSync(fd, `${prefix}${lines.join('\n')}\n`)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  return lines
}
