// The SSH layer. A command opens one session per run (`new Remote(...)`), hands it to every service as
// `remote`, and closes it in finally:
//   target.ts   inventory host + ~/.ssh/config → resolved target
//   connect.ts  handshake, host-key verification, authentication, jump hosts
//   exec.ts     one command: quoting, sudo -n, timeout(1), stdin, streaming, signals
//   files.ts    SFTP reads and atomic writes
//   remote.ts   the session: one connection per host, shared by every step
import { Remote, type RemoteOptions } from './remote.js'
import type { RunOptions, RunResult } from './exec.js'
import type { ReadFileOptions, WriteFileOptions } from './files.js'
import type { SshHost } from './target.js'

export { Remote, type RemoteOptions } from './remote.js'
export { DEFAULT_PORT, DEFAULT_USER, parseJumpSpec, resolveTarget, targetFromHost } from './target.js'
export type { ResolveContext, ResolvedTarget, SshHost, SshTarget } from './target.js'
export type { RunOptions, RunResult } from './exec.js'
export type { ReadFileOptions, WriteFileOptions } from './files.js'
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

// TRANSITIONAL (removed once every service takes `remote` in its options): the run's session.
let session: Remote | undefined

/** Sets the options of the run's session (closing a previous one's connections). */
export async function configureSsh(opts: RemoteOptions): Promise<Remote> {
  if (session) await session.close()
  session = new Remote(opts)
  return session
}

function current(): Remote {
  session ??= new Remote()
  return session
}

export function run(host: SshHost, argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return current().run(host, argv, opts)
}

export function writeFile(host: SshHost, path: string, content: string | Buffer, opts: WriteFileOptions): Promise<void> {
  return current().writeFile(host, path, content, opts)
}

export function readFile(host: SshHost, path: string, opts: ReadFileOptions = {}): Promise<Buffer> {
  return current().readFile(host, path, opts)
}

export async function closeAll(): Promise<void> {
  await session?.close()
}
