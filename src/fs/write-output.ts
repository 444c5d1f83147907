// Report files the user names on the command line (--junit, --prometheus): a missing directory, a
// directory, a device or an unwritable place is the user's to fix, so it is a one-line usage error with
// the path and a next step, never a crash with raw errno text. Written to a temporary file and renamed,
// so a reader (Jenkins, node_exporter's textfile collector) never sees half a file.
import { renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { basename, dirname, resolve } from 'node:path'
import { UsageError } from '../errors.js'
import { describeReadError } from './read-bounded.js'

/** Refuses, before any work is done, an output path that cannot be written. */
export function checkOutputPath(path: string, opts: { flag: string }): void {
  const full = resolve(path)
  const dir = dirname(full)
  const bad = (why: string, next: string): UsageError => new UsageError(`cannot write ${opts.flag} ${path}: ${why}`, { code: 'BAD_OUTPUT_PATH', suggestion: next })
  let dst: ReturnType<typeof statSync> | undefined
  try {
    const d = statSync(dir)
    if (!d.isDirectory()) throw bad(`${dir} is not a directory`, `give ${opts.flag} a path in an existing directory`)
  } catch (err) {
    if (err instanceof UsageError) throw err
    throw bad(`its directory ${dir} ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : `cannot be used (${describeReadError(err)})`}`, `create it first (mkdir -p ${dir}), or give ${opts.flag} another path`)
  }
  try {
    dst = statSync(full)
  } catch {
    dst = undefined
  }
  if (dst && !dst.isFile()) {
    throw bad(`it is ${dst.isDirectory() ? 'a directory' : dst.isCharacterDevice() ? 'a character device' : dst.isFIFO() ? 'a FIFO' : 'not a regular file'}`, `give ${opts.flag} the path of a regular file (it is created or replaced)`)
  }
}

export function writeOutputFile(path: string, content: string, opts: { flag: string }): void {
  checkOutputPath(path, opts)
  const full = resolve(path)
  const dir = dirname(full)
  const bad = (why: string, next: string): UsageError => new UsageError(`cannot write ${opts.flag} ${path}: ${why}`, { code: 'BAD_OUTPUT_PATH', suggestion: next })
  const tmp = `${dir}/.${basename(full)}.${process.pid}.tmp`
  try {
    writeFileSync(tmp, content, { mode: 0o644 })
    renameSync(tmp, full)
  } catch (err) {
    rmSync(tmp, { force: true })
    const code = (err as NodeJS.ErrnoException).code
    const why = code === 'EACCES' || code === 'EPERM' ? 'permission denied' : code === 'ENOSPC' ? 'no space left on the device' : code === 'EROFS' ? 'read-only file system' : describeReadError(err)
    throw bad(why, `give ${opts.flag} a path you can write`)
  }
}
