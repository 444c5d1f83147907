// ~/.ssh/config: the subset labctl honours (Host blocks, Include, HostName, User, Port, IdentityFile,
// ProxyJump, UserKnownHostsFile), with OpenSSH's rules: the first value obtained for a keyword wins,
// IdentityFile accumulates, `Host` patterns take `*`, `?` and `!negation`. `Match` blocks other than
// `Match all` are not evaluated (their settings are ignored).
import { existsSync, readdirSync } from 'node:fs'
import { userInfo } from 'node:os'
import { basename, dirname, isAbsolute, join } from 'node:path'
import { LabctlError } from '../errors.js'
import { describeReadError, readBoundedText } from '../fs/read-bounded.js'

type Directive = { keyword: string; args: string[]; file: string; line: number }

export type SshConfigMatch = {
  hostName?: string
  user?: string
  port?: number
  identityFiles: string[]
  /** ProxyJump as written ("none" already removed): `[user@]host[:port]`, comma-separated for a chain. */
  proxyJump?: string
  userKnownHostsFiles?: string[]
}

/** Splits a config line's arguments: whitespace-separated, double quotes group. */
function splitArgs(text: string): string[] {
  const out: string[] = []
  const re = /"([^"]*)"|(\S+)/g
  let m: RegExpExecArray | null
  while ((m = re.exec(text)) !== null) out.push(m[1] ?? m[2]!)
  return out
}

function wildcard(pattern: string): RegExp {
  const re = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')
  return new RegExp(`^${re}$`, 'i')
}

/** OpenSSH Host matching: any positive pattern matches one of NAMES and no negated pattern matches any. */
export function hostPatternsMatch(patterns: readonly string[], names: readonly string[]): boolean {
  let matched = false
  for (const p of patterns.flatMap((x) => x.split(',')).filter(Boolean)) {
    const negated = p.startsWith('!')
    const re = wildcard(negated ? p.slice(1) : p)
    if (names.some((n) => re.test(n))) {
      if (negated) return false
      matched = true
    }
  }
  return matched
}

export class SshConfig {
  constructor(
    readonly directives: readonly Directive[],
    readonly home: string,
  ) {}

  static empty(home: string): SshConfig {
    return new SshConfig([], home)
  }

  /** Reads FILE (and its Includes). A missing file is an empty config; an unreadable one is an error. */
  static load(file: string, home: string): SshConfig {
    if (!existsSync(file)) return SshConfig.empty(home)
    return new SshConfig(readDirectives(file, home, 0), home)
  }

  static parse(text: string, home: string, file = '<text>'): SshConfig {
    return new SshConfig(parseDirectives(text, file, home, 0), home)
  }

  /** The settings that apply to a host known by NAMES (the first is the one used for %h). */
  lookup(names: readonly string[]): SshConfigMatch {
    const out: SshConfigMatch = { identityFiles: [] }
    let active = true
    for (const d of this.directives) {
      if (d.keyword === 'host') {
        active = hostPatternsMatch(d.args, names)
        continue
      }
      if (d.keyword === 'match') {
        active = d.args.length === 1 && d.args[0]!.toLowerCase() === 'all'
        continue
      }
      if (!active || d.args.length === 0) continue
      const value = d.args[0]!
      switch (d.keyword) {
        case 'hostname':
          out.hostName ??= value
          break
        case 'user':
          out.user ??= value
          break
        case 'port':
          if (out.port === undefined) {
            const port = Number(value)
            if (!Number.isInteger(port) || port < 1 || port > 65535) {
              throw new LabctlError(`${d.file}:${d.line}: Port "${value}" is not a port number`, {
                code: 'SSH_CONFIG',
                suggestion: `fix the Port line in ${d.file}`,
              })
            }
            out.port = port
          }
          break
        case 'identityfile':
          if (value.toLowerCase() !== 'none' && !out.identityFiles.includes(value)) out.identityFiles.push(value)
          break
        case 'proxyjump':
          out.proxyJump ??= value
          break
        case 'userknownhostsfile':
          out.userKnownHostsFiles ??= d.args
          break
      }
    }
    if (out.proxyJump?.toLowerCase() === 'none') delete out.proxyJump
    if (out.userKnownHostsFiles?.[0]?.toLowerCase() === 'none') delete out.userKnownHostsFiles
    const host = names[0] ?? ''
    if (out.hostName !== undefined) out.hostName = expandTokens(out.hostName, { h: host })
    return out
  }
}

function readDirectives(file: string, home: string, depth: number): Directive[] {
  let text: string
  try {
    text = readBoundedText(file, 'ssh-config')
  } catch (err) {
    throw new LabctlError(`cannot read SSH config ${file}: ${describeReadError(err)}`, {
      code: 'SSH_CONFIG',
      suggestion: 'fix its permissions, or point labctl elsewhere',
      cause: err,
    })
  }
  return parseDirectives(text, file, home, depth)
}

function parseDirectives(text: string, file: string, home: string, depth: number): Directive[] {
  const out: Directive[] = []
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) return
    const m = /^([A-Za-z][A-Za-z0-9]*)\s*(?:=\s*|\s+)(.*)$/.exec(line)
    if (!m) return
    const keyword = m[1]!.toLowerCase()
    const args = splitArgs(m[2]!)
    if (keyword === 'include') {
      if (depth >= 16) throw new LabctlError(`${file}:${i + 1}: Include nested too deeply`, { code: 'SSH_CONFIG', suggestion: `check the Include lines in ${file}` })
      for (const pattern of args) for (const inc of expandInclude(pattern, home)) out.push(...readDirectives(inc, home, depth + 1))
      return
    }
    out.push({ keyword, args, file, line: i + 1 })
  })
  return out
}

/** An Include argument: ~ expanded, relative to ~/.ssh, `*`/`?` allowed in the last path component. */
function expandInclude(pattern: string, home: string): string[] {
  let p = pattern.startsWith('~/') ? join(home, pattern.slice(2)) : pattern
  if (!isAbsolute(p)) p = join(home, '.ssh', p)
  const base = basename(p)
  if (!/[*?]/.test(base)) return existsSync(p) ? [p] : []
  const dir = dirname(p)
  let names: string[]
  try {
    names = readdirSync(dir)
  } catch {
    return []
  }
  const re = wildcard(base)
  return names.filter((n) => re.test(n) && !n.startsWith('.')).sort().map((n) => join(dir, n))
}

/** OpenSSH percent tokens (%h %p %r %u %d %%) and a leading ~ in a path or host name. */
export function expandTokens(value: string, tokens: { h?: string; p?: number; r?: string; d?: string; u?: string }): string {
  const d = tokens.d
  let v = value
  if (d !== undefined && (v === '~' || v.startsWith('~/'))) v = d + v.slice(1)
  return v.replace(/%([%hprdu])/g, (all, t: string) => {
    switch (t) {
      case '%':
        return '%'
      case 'h':
        return tokens.h ?? all
      case 'p':
        return tokens.p !== undefined ? String(tokens.p) : all
      case 'r':
        return tokens.r ?? all
      case 'd':
        return d ?? all
      case 'u':
        return tokens.u ?? localUser()
      default:
        return all
    }
  })
}

function localUser(): string {
  try {
    return userInfo().username
  } catch {
    return process.env.USER ?? 'root'
  }
}
