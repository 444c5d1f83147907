// Files: reading and atomically replacing remote files. Content goes over SFTP (never in a command
// line); root-owned files are staged in a private temp dir and installed with `install -m -o -g` + `mv`
// through `sudo -n`.
import { randomBytes } from 'node:crypto'
import { posix } from 'node:path'
import type { SFTPWrapper } from 'ssh2'
import { LabctlError, oneLine } from '../errors.js'
import { type Conn, orLost } from './connect.js'
import { type ExecDefaults, runArgv, toRunResult } from './exec.js'

export type WriteFileOptions = {
  /** File mode, e.g. 0o600. */
  mode: number
  /** Owner and group (names or numbers): the file is installed with `install -o -g` (through sudo -n unless root). */
  owner?: string
  group?: string
  /** Write through sudo -n even without owner/group (a directory the login user cannot write); same rules as RunOptions.sudo. */
  sudo?: boolean
  /** Keep the replaced file as TARGET.prev (default true). */
  keepPrevious?: boolean
  timeoutMs?: number
}

export type ReadFileOptions = { sudo?: boolean; timeoutMs?: number }

/** What the file functions need to know about the host besides the connection. */
export type FileContext = ExecDefaults & {
  /** The host allows sudo (the inventory's `sudo`; true for bare targets). */
  hostSudo: boolean
}

const INSTALL_SCRIPT = [
  'set -eu',
  'src=$1 target=$2 mode=$3 owner=$4 group=$5 keep=$6',
  'if [ -d "$target" ]; then echo "labctl: $target is a directory" >&2; exit 3; fi',
  'dir=$(dirname "$target")',
  'base=$(basename "$target")',
  'stage=$(mktemp "$dir/.$base.labctl.XXXXXXXX")',
  'trap \'rm -f "$stage"\' EXIT',
  'set -- -m "$mode"',
  'if [ -n "$owner" ]; then set -- "$@" -o "$owner"; fi',
  'if [ -n "$group" ]; then set -- "$@" -g "$group"; fi',
  'install "$@" "$src" "$stage"',
  'sync "$stage" 2>/dev/null || true',
  'if [ "$keep" = 1 ] && [ -e "$target" ]; then ln -f "$target" "$target.prev" 2>/dev/null || cp -p "$target" "$target.prev"; fi',
  'mv -f "$stage" "$target"',
  'trap - EXIT',
  'sync "$dir" 2>/dev/null || true',
].join('\n')

function sftpCode(err: unknown): number | undefined {
  const c = (err as { code?: unknown })?.code
  return typeof c === 'number' ? c : undefined
}

function promisify<T>(fn: (cb: (err: Error | undefined | null, v: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v))))
}

/** The connection's SFTP session, opened on first use and shared. */
function sftp(c: Conn): Promise<SFTPWrapper> {
  if (!c.sftp) {
    c.sftp = orLost(c, new Promise<SFTPWrapper>((resolve, reject) => {
      c.client.sftp((err, s) => {
        if (err) {
          reject(
            new LabctlError(`SFTP is not available on ${c.target.label}: ${oneLine(err.message, 120)}`, {
              code: 'SSH_SFTP_UNAVAILABLE',
              suggestion: 'enable the sftp subsystem in the host\'s sshd_config ("Subsystem sftp internal-sftp")',
              cause: err,
            }),
          )
        } else {
          s.on('close', () => {
            if (c.sftp) delete c.sftp
          })
          resolve(s)
        }
      })
    }), 'while opening SFTP')
    c.sftp.catch(() => {
      delete c.sftp
    })
  }
  return c.sftp
}

function sftpError(err: unknown, c: Conn, what: string, path: string): LabctlError {
  if (err instanceof LabctlError) return err
  const code = sftpCode(err)
  const reason = code === 2 ? 'no such file or directory' : code === 3 ? 'permission denied' : oneLine((err as Error)?.message ?? String(err), 120)
  return new LabctlError(`cannot ${what} ${path} on ${c.target.label}: ${reason}`, {
    code: 'SSH_SFTP_FAILED',
    suggestion:
      code === 3
        ? `that needs privileges: write it with owner/group or sudo (host.sudo), or check the permissions of ${posix.dirname(path)}`
        : `check that ${posix.dirname(path)} exists on ${c.target.host}`,
    cause: err,
  })
}

/** Writes CONTENT to a fresh file over SFTP (0600, fsynced), failing if PATH exists. */
async function sftpPut(s: SFTPWrapper, path: string, content: Buffer, mode: number): Promise<void> {
  const handle = await promisify<Buffer>((cb) => s.open(path, 'wx', { mode: 0o600 }, cb))
  try {
    for (let off = 0; off < content.length; off += 32 * 1024) {
      const len = Math.min(32 * 1024, content.length - off)
      await promisify<void>((cb) => s.write(handle, content, off, len, off, (e) => cb(e, undefined)))
    }
    await promisify<void>((cb) => s.ext_openssh_fsync(handle, (e) => cb(e, undefined))).catch((e: unknown) => {
      // Older servers lack fsync@openssh.com: the rename still makes the write atomic.
      if (!/not supported|unsupported/i.test(String((e as Error)?.message))) throw e
    })
    await promisify<void>((cb) => s.fchmod(handle, mode, (e) => cb(e, undefined)))
  } finally {
    await promisify<void>((cb) => s.close(handle, (e) => cb(e, undefined))).catch(() => undefined)
  }
}

function checkWriteArgs(path: string, o: WriteFileOptions): void {
  // eslint-disable-next-line no-control-regex
  if (!path.startsWith('/') || /[\u0000-\u001f]/.test(path) || path.endsWith('/')) {
    throw new LabctlError(`remote path "${oneLine(path, 120)}" must be an absolute file path`, { code: 'SSH_BAD_PATH', suggestion: 'this is a labctl bug: report it' })
  }
  for (const [what, v] of [
    ['owner', o.owner],
    ['group', o.group],
  ] as const) {
    if (v !== undefined && !/^([a-z_][a-z0-9_-]*\$?|\d+)$/.test(v)) {
      throw new LabctlError(`${what} "${oneLine(v, 40)}" is not a user/group name`, { code: 'SSH_BAD_OWNER', suggestion: 'fix the owner/group in the inventory' })
    }
  }
  if (!Number.isInteger(o.mode) || o.mode < 0 || o.mode > 0o7777) {
    throw new LabctlError(`file mode ${String(o.mode)} is not a permission mode`, { code: 'SSH_BAD_MODE', suggestion: 'this is a labctl bug: report it' })
  }
}

/** Temp file next to PATH, fsync, chmod, rename over PATH (the old version hard-linked to PATH.prev first). */
async function replaceOverSftp(c: Conn, s: SFTPWrapper, path: string, buf: Buffer, mode: number, keep: boolean): Promise<void> {
  const tmp = posix.join(posix.dirname(path), `.${posix.basename(path)}.labctl-${randomBytes(6).toString('hex')}.tmp`)
  try {
    await sftpPut(s, tmp, buf, mode)
    if (keep) {
      const exists = await promisify<unknown>((cb) => s.lstat(path, cb)).then(
        () => true,
        (e: unknown) => {
          if (sftpCode(e) === 2) return false
          throw e
        },
      )
      if (exists) {
        await promisify<void>((cb) => s.unlink(`${path}.prev`, (e) => cb(e, undefined))).catch((e: unknown) => {
          if (sftpCode(e) !== 2) throw e
        })
        await promisify<void>((cb) => s.ext_openssh_hardlink(path, `${path}.prev`, (e) => cb(e, undefined)))
      }
    }
    await promisify<void>((cb) => s.ext_openssh_rename(tmp, path, (e) => cb(e, undefined)))
  } catch (err) {
    await promisify<void>((cb) => s.unlink(tmp, (e) => cb(e, undefined))).catch(() => undefined)
    throw sftpError(err, c, 'write', path)
  }
}

/**
 * Atomically replaces PATH on the host with CONTENT, mode MODE: a temp file in the same directory, fsync,
 * chmod, then rename over the target, the old version kept as PATH.prev. With owner/group (or sudo), the
 * content goes over SFTP into a private temp dir, then `install -m -o -g` + `mv` run through `sudo -n`.
 * The content never appears in a command line.
 */
export async function writeRemoteFile(c: Conn, path: string, content: string | Buffer, o: WriteFileOptions, ctx: FileContext): Promise<void> {
  checkWriteArgs(path, o)
  const buf = typeof content === 'string' ? Buffer.from(content, 'utf8') : content
  const keep = o.keepPrevious ?? true
  const s = await sftp(c)
  const notRoot = c.target.user !== 'root'
  const privileged = o.owner !== undefined || o.group !== undefined || (o.sudo === true && ctx.hostSudo && notRoot)
  if (!privileged) return orLost(c, replaceOverSftp(c, s, path, buf, o.mode, keep), `while writing ${path} over SFTP`)
  const timeoutMs = o.timeoutMs ?? 60_000
  const run = async (argv: string[], sudo: boolean, check: boolean) => toRunResult(c, argv, await runArgv(c, argv, { sudo, timeoutMs }, ctx), check)
  const tmpDir = (await run(['mktemp', '-d'], false, true)).stdout.trim()
  if (!tmpDir.startsWith('/')) throw new LabctlError(`mktemp -d on ${c.target.label} printed "${oneLine(tmpDir, 80)}"`, { code: 'SSH_SFTP_FAILED', suggestion: `check that /tmp on ${c.target.host} exists and is writable (mktemp -d)` })
  try {
    const staged = posix.join(tmpDir, 'content')
    await orLost(c, sftpPut(s, staged, buf, 0o600), `while writing ${staged} over SFTP`).catch((err: unknown) => {
      throw sftpError(err, c, 'write', staged)
    })
    const mode = o.mode.toString(8).padStart(4, '0')
    const argv = ['sh', '-c', INSTALL_SCRIPT, 'labctl-install', staged, path, mode, o.owner ?? '', o.group ?? '', keep ? '1' : '0']
    const res = await run(argv, notRoot && ctx.hostSudo, false)
    if (res.code !== 0) {
      throw new LabctlError(
        `installing ${path} (mode ${mode}${o.owner ? `, owner ${o.owner}` : ''}${o.group ? `, group ${o.group}` : ''}) on ${c.target.label} failed: ${oneLine(res.stderr || res.stdout, 200) || `exit ${res.code}`}`,
        {
          code: 'SSH_INSTALL_FAILED',
          suggestion: `check that ${posix.dirname(path)} exists and that the owner and group exist on ${c.target.host}`,
        },
      )
    }
  } finally {
    await run(['rm', '-rf', '--', tmpDir], false, false).catch(() => undefined)
  }
}

/** Reads a remote file: over SFTP, or `sudo -n cat` when SUDO (and not root, and the host allows sudo). */
export async function readRemoteFile(c: Conn, path: string, o: ReadFileOptions, ctx: FileContext): Promise<Buffer> {
  if (o.sudo === true && ctx.hostSudo && c.target.user !== 'root') {
    const res = await runArgv(c, ['cat', '--', path], { sudo: true, ...(o.timeoutMs ? { timeoutMs: o.timeoutMs } : {}) }, ctx)
    if (res.code !== 0) {
      throw new LabctlError(`cannot read ${path} on ${c.target.label}: ${oneLine(res.stderr.toString('utf8'), 160)}`, {
        code: 'SSH_READ_FAILED',
        suggestion: `check that ${path} exists`,
      })
    }
    return res.stdout
  }
  const s = await sftp(c)
  return orLost(c, promisify<Buffer>((cb) => s.readFile(path, cb)), `while reading ${path} over SFTP`).catch((err: unknown) => {
    throw sftpError(err, c, 'read', path)
  })
}
