import { homedir } from 'node:os'
import { join } from 'node:path'

/** XDG base directories for labctl; never hard-coded, always overridable by the environment. */
export function xdgDir(kind: 'config' | 'state' | 'cache', env: NodeJS.ProcessEnv = process.env): string {
  const home = env.HOME ?? homedir()
  const base =
    kind === 'config'
      ? env.XDG_CONFIG_HOME || join(home, '.config')
      : kind === 'state'
        ? env.XDG_STATE_HOME || join(home, '.local', 'state')
        : env.XDG_CACHE_HOME || join(home, '.cache')
  return join(base, 'labctl')
}

export const labsDir = (env: NodeJS.ProcessEnv = process.env): string => join(xdgDir('config', env), 'labs')
