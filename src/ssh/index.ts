// The SSH layer. A command opens one session per run (`new Remote(...)`, see the base command's
// openRemote), hands it to every service as `remote`, and closes it in finally. No module state:
//   target.ts   inventory host + ~/.ssh/config → resolved target
//   connect.ts  handshake, host-key verification, authentication, jump hosts
//   exec.ts     one command: quoting, sudo -n, timeout(1), stdin, streaming, signals
//   files.ts    SFTP reads and atomic writes
//   remote.ts   the session: one connection per host, shared by every step
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
