// Files that hold secrets: written privately (0600) and durably, or not at all.
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs'
import { dirname } from 'node:path'
import { LabctlError, errorMessage } from './errors.js'

/** Writes a file durably and privately: temp file 0600, fsync, rename, fsync the directory. */
export function writePrivateFile(path: string, content: string): void {
  const tmp = `${path}.tmp-${process.pid}`
  try {
    const fd = openSync(tmp, 'w', 0o600)
    try {
      writeSync(fd, content)
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    renameSync(tmp, path)
    const dfd = openSync(dirname(path), 'r')
    fsyncSync(dfd)
    closeSync(dfd)
  } catch (err) {
    rmSync(tmp, { force: true })
    const code = (err as NodeJS.ErrnoException).code
    throw new LabctlError(`cannot write ${path}: ${code === 'ENOSPC' ? 'no space left on the device' : (code ?? errorMessage(err))}`, {
      code: code === 'ENOSPC' ? 'DISK_FULL' : 'LOCAL_WRITE',
      suggestion: code === 'ENOSPC' ? `free space on the filesystem holding ${dirname(path)}, then rerun` : `check ${dirname(path)} (permissions, mount)`,
    })
  }
}
