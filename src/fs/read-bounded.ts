// Every local file labctl reads goes through here: a size cap per kind of file, read without trusting
// the size the file system reports (/proc files say 0, /dev/zero never ends, a FIFO may never write).
import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs'
import { isatty } from 'node:tty'
import { UsageError } from '../errors.js'

export type FileKind = 'inventory' | 'token' | 'jenkins-api-token' | 'ca-bundle' | 'runbook' | 'known-hosts' | 'ssh-config' | 'ssh-key' | 'state' | 'registry-auth' | 'oci-index' | 'oci-manifest'

const KiB = 1024
const MiB = 1024 * KiB

/** The largest file of each kind labctl accepts, and what it is called in messages. */
export const FILE_LIMITS: Record<FileKind, { maxBytes: number; label: string }> = {
  // A lab's inventory is a few KiB; YAML parsing costs ~5 µs a byte, so the cap bounds the time too.
  inventory: { maxBytes: 256 * KiB, label: 'inventory' },
  token: { maxBytes: 4 * KiB, label: 'token file' },
  'jenkins-api-token': { maxBytes: 4 * KiB, label: 'Jenkins API token file' },
  // The system bundle (Debian: /etc/ssl/certs/ca-certificates.crt) is ~220 KiB.
  'ca-bundle': { maxBytes: 4 * MiB, label: 'CA bundle' },
  runbook: { maxBytes: 512 * KiB, label: 'runbook' },
  'known-hosts': { maxBytes: 8 * MiB, label: 'known_hosts file' },
  'ssh-config': { maxBytes: 1 * MiB, label: 'SSH config' },
  'ssh-key': { maxBytes: 64 * KiB, label: 'SSH private key' },
  state: { maxBytes: 4 * MiB, label: 'state file' },
  // docker's config.json / REGISTRY_AUTH_FILE: a few KiB of base64 credentials.
  'registry-auth': { maxBytes: 1 * MiB, label: 'registry auth file' },
  // An OCI layout's index.json and manifests: small JSON (registries cap manifests at 4 MiB).
  'oci-index': { maxBytes: 4 * MiB, label: 'OCI layout index' },
  'oci-manifest': { maxBytes: 4 * MiB, label: 'OCI manifest' },
}

/** How long a FIFO may take to deliver its content (a writer that never writes must not hang labctl). */
const FIFO_DEADLINE_MS = 2000
/** stdin (`--token-file -`) may come from a slower producer (a password manager asking for a passphrase). */
const STDIN_DEADLINE_MS = 30_000

export function formatBytes(n: number): string {
  if (n >= MiB && n % MiB === 0) return `${n / MiB} MiB`
  if (n >= KiB && n % KiB === 0) return `${n / KiB} KiB`
  return `${n} bytes`
}

/** A local file labctl refused to read or could not read: exit 2, names the file, says why. */
export class FileReadError extends UsageError {
  readonly path: string
  /** errno-like: ENOENT, EACCES, EISDIR, EFBIG (over the cap), ENOTREG (a device or socket), ETIMEDOUT (a silent FIFO). */
  readonly reason: string
  /** Short description of the problem, e.g. "larger than 1 MiB (the limit for an inventory)". */
  readonly why: string
  constructor(path: string, reason: string, why: string, kind: FileKind) {
    super(`cannot read ${FILE_LIMITS[kind].label} ${path}: ${why}`, {
      code: reason === 'EFBIG' ? 'FILE_TOO_LARGE' : reason === 'ENOENT' ? 'FILE_MISSING' : 'FILE_UNREADABLE',
      suggestion: suggestionFor(reason, kind),
    })
    this.name = 'FileReadError'
    this.path = path
    this.reason = reason
    this.why = why
  }
}

function suggestionFor(reason: string, kind: FileKind): string {
  const label = FILE_LIMITS[kind].label
  switch (reason) {
    case 'ENOENT':
      return `check the path of the ${label}`
    case 'EACCES':
      return `fix its permissions (the ${label} must be readable by you)`
    case 'EISDIR':
      return `give the path of the ${label} itself, not of a directory`
    case 'EFBIG':
      return `point labctl at the real ${label} (it is a small text file)`
    case 'ENOTREG':
      return `point labctl at a regular file holding the ${label}`
    default:
      return `check the path of the ${label}`
  }
}

function typeOf(st: Stats): string | undefined {
  if (st.isFile() || st.isFIFO()) return undefined
  if (st.isDirectory()) return 'a directory'
  if (st.isCharacterDevice()) return 'a character device'
  if (st.isBlockDevice()) return 'a block device'
  if (st.isSocket()) return 'a socket'
  return 'not a regular file'
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
}

/** Short reason for any error thrown while reading a file (for callers that add their own context). */
export function describeReadError(err: unknown): string {
  if (err instanceof FileReadError) return err.why
  const code = (err as NodeJS.ErrnoException).code
  if (code === 'ENOENT') return 'no such file'
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied'
  if (code === 'EISDIR') return 'is a directory'
  if (code === 'ELOOP') return 'too many symbolic links'
  if (code === 'ENOTDIR') return 'a part of the path is not a directory'
  return String(code ?? (err as Error).message ?? err)
}

/**
 * Reads a file of the given kind, at most its cap: regular files and /proc files up to EOF, a FIFO
 * (e.g. `--token-file <(pass show trivy)`) for at most 2 s, "-" or 0 = stdin. Devices, sockets and
 * directories are refused. Never trusts st_size; memory use is bounded by the cap.
 */
export function readBounded(path: string | 0, kind: FileKind, opts: { maxBytes?: number } = {}): Buffer {
  const max = opts.maxBytes ?? FILE_LIMITS[kind].maxBytes
  const shown = path === 0 ? 'stdin' : path
  const fail = (reason: string, why: string): FileReadError => new FileReadError(shown, reason, why, kind)
  let fd: number
  let own = false
  if (path === 0) fd = 0
  else {
    try {
      fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY)
      own = true
    } catch (err) {
      throw fail(String((err as NodeJS.ErrnoException).code ?? 'EIO'), describeReadError(err))
    }
  }
  try {
    const st = fstatSync(fd)
    const bad = typeOf(st)
    // stdin may be a terminal, a pipe or a socket (what a parent process hands over); a named file may not.
    const stdinStream = path === 0 && ((st.isCharacterDevice() && isatty(0)) || st.isSocket())
    if (bad && !stdinStream) {
      throw fail(bad === 'a directory' ? 'EISDIR' : 'ENOTREG', `is ${bad}, not a file`)
    }
    if (st.isFile() && st.size > max) throw fail('EFBIG', `larger than ${formatBytes(max)} (the limit for one ${FILE_LIMITS[kind].label})`)
    const chunks: Buffer[] = []
    let total = 0
    const waitMs = path === 0 ? STDIN_DEADLINE_MS : FIFO_DEADLINE_MS
    const deadline = performance.now() + waitMs
    const buf = Buffer.allocUnsafe(64 * KiB)
    for (;;) {
      let n: number
      try {
        n = readSync(fd, buf, 0, Math.min(buf.length, max + 1 - total), null)
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        if (code === 'EAGAIN' || code === 'EWOULDBLOCK') {
          if (performance.now() > deadline) throw fail('ETIMEDOUT', `nothing more arrived within ${waitMs} ms (a pipe whose writer is silent)`)
          sleepSync(5)
          continue
        }
        if (code === 'EISDIR') throw fail('EISDIR', 'is a directory, not a file')
        throw fail(String(code ?? 'EIO'), describeReadError(err))
      }
      if (n === 0) break
      chunks.push(Buffer.from(buf.subarray(0, n)))
      total += n
      if (total > max) throw fail('EFBIG', `larger than ${formatBytes(max)} (the limit for one ${FILE_LIMITS[kind].label})`)
    }
    return Buffer.concat(chunks, total)
  } finally {
    if (own) closeSync(fd)
  }
}

/** readBounded, decoded as UTF-8. */
export function readBoundedText(path: string | 0, kind: FileKind, opts: { maxBytes?: number } = {}): string {
  return readBounded(path, kind, opts).toString('utf8')
}
