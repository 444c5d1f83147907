// Target resolution: an inventory host (or a bare target) plus ~/.ssh/config → what is connected to.
// What the operator wrote in the inventory wins over ~/.ssh/config; ~/.ssh/config fills what the
// inventory leaves out; ssh's own defaults (root, port 22) come last.
import { join } from 'node:path'
import { LabctlError, oneLine } from '../errors.js'
import type { ScannerHost } from '../inventory/schema.js'
import { type SshConfig, expandTokens } from './config.js'
import { knownHostName } from './known-hosts.js'

/** Where and how to connect. Every field but `host` is optional; ~/.ssh/config fills the gaps. */
export type SshTarget = {
  /** Name used in messages (the inventory host name); defaults to `host`. */
  name?: string
  /** Host name: matched against ~/.ssh/config Host patterns, recorded in known_hosts, and connected to unless `address` or HostName say otherwise. */
  host: string
  /** Address to connect to instead of resolving `host` (a HostName in ~/.ssh/config wins); also looked up in known_hosts. */
  address?: string
  /** Further names matched against ~/.ssh/config Host patterns (e.g. the short host name). */
  configNames?: string[]
  /** Remote user; else User in ~/.ssh/config; else root. */
  user?: string
  /** Else Port in ~/.ssh/config; else 22. */
  port?: number
  /** Private key file, tried first; then ssh-agent, then IdentityFile entries of ~/.ssh/config (else ~/.ssh/id_*). */
  identityFile?: string
  /** The only known_hosts file used (read and appended to); else UserKnownHostsFile or ~/.ssh/known_hosts (+ /etc/ssh/ssh_known_hosts, read only). */
  knownHostsFile?: string
  /** `[user@]host[:port]`, comma-separated for a chain; else ProxyJump in ~/.ssh/config. */
  jumpHost?: string
  connectTimeoutMs?: number
}

/** An inventory host or a bare target. */
export type SshHost = ScannerHost | SshTarget

export type IdentityFile = { path: string; explicit: boolean }

/** A target with ~/.ssh/config applied: what is actually connected to. */
export type ResolvedTarget = {
  label: string
  host: string
  port: number
  user: string
  connectTimeoutMs: number
  identityFiles: IdentityFile[]
  agentSocket?: string
  /** known_hosts names ("host" / "[host]:port") the key may be recorded under; all are written on acceptance. */
  hostKeyNames: string[]
  knownHostsFiles: string[]
  knownHostsWriteFile: string
  jump?: ResolvedTarget
  key: string
}

/** What resolution reads besides the target: the parsed ssh config, the home directory, ssh-agent. */
export type ResolveContext = {
  config: SshConfig
  home: string
  agentSocket?: string | undefined
  /** Connect timeout when neither the target nor its inventory entry gives one (ms). */
  connectTimeoutMs?: number | undefined
}

/** ssh's own defaults, applied after the inventory and ~/.ssh/config. */
export const DEFAULT_USER = 'root'
export const DEFAULT_PORT = 22
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000
const DEFAULT_IDENTITIES = ['id_ed25519', 'id_ecdsa', 'id_rsa']
const MAX_JUMP_DEPTH = 5

export function isScannerHost(h: SshHost): h is ScannerHost {
  return 'fqdn' in h && 'ssh' in h
}

/** `sudo: true` asks for privileges; an inventory host with `sudo: false` gets the step without sudo. */
export function useSudo(h: SshHost, wanted: boolean | undefined): boolean {
  return wanted === true && (!isScannerHost(h) || h.sudo)
}

/**
 * An inventory host as an SshTarget: connect to its address when known (no DNS needed), else its FQDN.
 * Only the keys the operator wrote are carried over, so that an explicit `user: root` / `port: 22`
 * beats ~/.ssh/config and an absent one lets ~/.ssh/config decide.
 */
export function targetFromHost(h: ScannerHost): SshTarget {
  const s = h.ssh
  return {
    name: h.name,
    host: h.fqdn,
    ...(h.address ? { address: h.address } : {}),
    configNames: [h.name],
    ...(s.user !== undefined ? { user: s.user } : {}),
    ...(s.port !== undefined ? { port: s.port } : {}),
    ...(s.identityFile ? { identityFile: s.identityFile } : {}),
    ...(s.knownHostsFile ? { knownHostsFile: s.knownHostsFile } : {}),
    ...(s.jumpHost ? { jumpHost: s.jumpHost } : {}),
    connectTimeoutMs: s.connectTimeoutMs,
  }
}

/** "[user@]host[:port]", "ssh://user@host:port" or "user@[::1]:port" → parts. */
export function parseJumpSpec(spec: string): { user?: string; host: string; port?: number } {
  const s = spec.trim().replace(/^ssh:\/\//, '')
  const m = /^(?:([^@\s]+)@)?(\[[^\]]+\]|[^:@\s]+)(?::(\d{1,5}))?$/.exec(s)
  if (!m) {
    throw new LabctlError(`jump host "${oneLine(spec, 80)}" is not [user@]host[:port]`, {
      code: 'SSH_BAD_JUMP',
      suggestion: 'fix ssh.jumpHost in the inventory or ProxyJump in ~/.ssh/config',
    })
  }
  return { ...(m[1] ? { user: m[1] } : {}), host: m[2]!.replace(/^\[|\]$/g, ''), ...(m[3] ? { port: Number(m[3]) } : {}) }
}

/** Applies ~/.ssh/config and the defaults to a host. Pure: reads nothing but CTX. */
export function resolveTarget(h: SshHost, ctx: ResolveContext, depth = 0): ResolvedTarget {
  const t = isScannerHost(h) ? targetFromHost(h) : h
  if (depth > MAX_JUMP_DEPTH) {
    throw new LabctlError(`jump host chain to ${t.host} is longer than ${MAX_JUMP_DEPTH} hops (a ProxyJump loop?)`, {
      code: 'SSH_BAD_JUMP',
      suggestion: 'check ProxyJump in ~/.ssh/config and ssh.jumpHost in the inventory',
    })
  }
  const expand = (p: string, tokens: { h?: string; r?: string; p?: number }): string => expandTokens(p, { ...tokens, d: ctx.home })
  const cfg = ctx.config.lookup([t.host, ...(t.configNames ?? [])])
  const host = cfg.hostName ?? t.address ?? t.host
  const user = t.user ?? cfg.user ?? DEFAULT_USER
  const port = t.port ?? cfg.port ?? DEFAULT_PORT
  const connectTimeoutMs = t.connectTimeoutMs ?? ctx.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS
  const tokens = { h: host, r: user, p: port }
  const identityFiles: IdentityFile[] = []
  if (t.identityFile) identityFiles.push({ path: expand(t.identityFile, tokens), explicit: true })
  for (const f of cfg.identityFiles) identityFiles.push({ path: expand(f, tokens), explicit: false })
  if (identityFiles.length === 0) for (const f of DEFAULT_IDENTITIES) identityFiles.push({ path: join(ctx.home, '.ssh', f), explicit: false })
  let knownHostsFiles: string[]
  if (t.knownHostsFile) knownHostsFiles = [expand(t.knownHostsFile, tokens)]
  else {
    const mine = cfg.userKnownHostsFiles?.map((f) => expand(f, tokens)) ?? [join(ctx.home, '.ssh', 'known_hosts'), join(ctx.home, '.ssh', 'known_hosts2')]
    knownHostsFiles = [...mine, '/etc/ssh/ssh_known_hosts', '/etc/ssh/ssh_known_hosts2']
  }
  const hostKeyNames = [...new Set([t.host, host, ...(t.address ? [t.address] : [])].map((n) => knownHostName(n, port)))]
  const jumpSpec = t.jumpHost ?? cfg.proxyJump
  let jump: ResolvedTarget | undefined
  if (jumpSpec) {
    const hops = jumpSpec
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)
    const last = parseJumpSpec(hops.at(-1)!)
    const rest = hops.slice(0, -1).join(',')
    jump = resolveTarget(
      {
        host: last.host,
        ...(last.user ? { user: last.user } : {}),
        ...(last.port ? { port: last.port } : {}),
        ...(t.knownHostsFile ? { knownHostsFile: t.knownHostsFile } : {}),
        ...(rest ? { jumpHost: rest } : {}),
        connectTimeoutMs,
      },
      ctx,
      depth + 1,
    )
    // The inventory's key usually opens the jump host too: offer it after the jump host's own.
    if (t.identityFile) jump.identityFiles.push({ path: expand(t.identityFile, tokens), explicit: false })
  }
  const name = t.name ?? t.host
  const endpoint = `${user}@${host}:${port}`
  return {
    label: name === host ? endpoint : `${name} (${endpoint})`,
    host,
    port,
    user,
    connectTimeoutMs,
    identityFiles,
    ...(ctx.agentSocket ? { agentSocket: ctx.agentSocket } : {}),
    hostKeyNames,
    knownHostsFiles,
    knownHostsWriteFile: knownHostsFiles[0]!,
    ...(jump ? { jump } : {}),
    key: `${endpoint}${jump ? ` via ${jump.key}` : ''}`,
  }
}
