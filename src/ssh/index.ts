// The SSH layer: `import { run, writeFile, closeAll } from '../ssh/index.js'`.
// One pool per labctl run: configure it once (flags such as --accept-new-host-key), use it from every
// step, and close it at the end (closeAll in the command's finally, or the process will not exit).
import type { RunOptions, RunResult, SshHost, SshPoolOptions, WriteFileOptions } from './pool.js'
import { SshPool } from './pool.js'

export { SshPool, parseJumpSpec, targetFromHost } from './pool.js'
export type { ResolvedTarget, RunOptions, RunResult, SshHost, SshPoolOptions, SshTarget, WriteFileOptions } from './pool.js'
export { quoteArg, shellQuote } from './quote.js'
export { sudoFailure, connectError } from './failures.js'
export { SshConfig, hostPatternsMatch } from './config.js'
export {
  appendKnownHost,
  fingerprint,
  hostFieldMatches,
  hostKeyInfo,
  knownHostName,
  lookupKnownHosts,
  verifyHostKey,
  type HostKeyInfo,
  type HostKeyVerdict,
  type KnownHostEntry,
} from './known-hosts.js'

let pool: SshPool | undefined

/** Sets the options of the run's pool (closing a previous one's connections). Call before the first remote step. */
export async function configureSsh(opts: SshPoolOptions): Promise<SshPool> {
  if (pool) await pool.closeAll()
  pool = new SshPool(opts)
  return pool
}

/** The run's pool (default options until configureSsh is called). */
export function sshPool(): SshPool {
  pool ??= new SshPool()
  return pool
}

export function run(host: SshHost, argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return sshPool().run(host, argv, opts)
}

export function writeFile(host: SshHost, path: string, content: string | Buffer, opts: WriteFileOptions): Promise<void> {
  return sshPool().writeFile(host, path, content, opts)
}

export function readFile(host: SshHost, path: string, opts: { sudo?: boolean; timeoutMs?: number } = {}): Promise<Buffer> {
  return sshPool().readFile(host, path, opts)
}

/** Closes every SSH connection of this run. Safe to call more than once, or when nothing was opened. */
export async function closeAll(): Promise<void> {
  await pool?.closeAll()
}
