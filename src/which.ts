// Finding a local program the way a shell would (PATH, then the sbin directories).
import { accessSync, constants } from 'node:fs'
import { delimiter, join } from 'node:path'

/** The first executable `cmd` on PATH (then /usr/sbin, /sbin, /usr/local/sbin and `extra`), or undefined. */
export function which(cmd: string, extra: string[] = [], env: NodeJS.ProcessEnv = process.env): string | undefined {
  const dirs = [...(env.PATH ?? '').split(delimiter).filter(Boolean), '/usr/sbin', '/sbin', '/usr/local/sbin', ...extra]
  for (const d of dirs) {
    const p = join(d, cmd)
    try {
      accessSync(p, constants.X_OK)
      return p
    } catch {
      /* next */
    }
  }
  return undefined
}
