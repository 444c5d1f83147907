// The SSH layer against a real OpenSSH server on 127.0.0.1 (see sshd.ts).
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { execa } from 'execa'
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest'
import { LabctlError } from '../../src/errors.js'
import { parseInventory } from '../../src/inventory/load.js'
import { HostSchema } from '../../src/inventory/schema.js'
import { freePorts } from '../../src/sandbox/proc.js'
import {
  SshConfig,
  Remote,
  hostFieldMatches,
  parseJumpSpec,
  shellQuote,
  sudoFailure,
  type RemoteOptions,
  type SshTarget,
  verifyHostKey,
} from '../../src/ssh/index.js'
import { startSshd, type Sshd } from './sshd.js'

let sshd: Sshd
let work: string
const pools: Remote[] = []

/** A pool isolated from the real ~/.ssh (no config, no agent, HOME in a temp dir). */
function pool(opts: RemoteOptions = {}): Remote {
  const p = new Remote({ sshConfigFile: null, env: { HOME: join(work, 'home') }, ...opts })
  pools.push(p)
  return p
}

let khCount = 0
/** A known_hosts file holding LINES (default: the test sshd's key). */
function knownHosts(lines: string[] = [sshd.knownHostsLine()]): string {
  const file = join(work, `known_hosts.${++khCount}`)
  if (lines.length) writeFileSync(file, `${lines.join('\n')}\n`)
  return file
}

function target(over: Partial<SshTarget> = {}): SshTarget {
  return { host: '127.0.0.1', port: sshd.port, identityFile: sshd.clientKey, knownHostsFile: knownHosts(), connectTimeoutMs: 5000, ...over }
}

async function failure(p: Promise<unknown>): Promise<LabctlError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(err, 'expected a failure').toBeInstanceOf(LabctlError)
  const e = err as LabctlError
  expect(e.message).not.toMatch(/\n/)
  expect(e.suggestion, `no suggestion for: ${e.message}`).toBeTruthy()
  return e
}

/** Processes whose command line contains TEXT (the sshd runs on this machine). */
function processesWith(text: string): number {
  let n = 0
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').includes(text)) n++
    } catch {
      /* gone */
    }
  }
  return n
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'labctl-ssh-test-'))
  mkdirSync(join(work, 'home'))
  // A sudo that wants a password for one user and defers to the real sudo otherwise.
  const bin = join(work, 'bin')
  mkdirSync(bin)
  writeFileSync(
    join(bin, 'sudo'),
    '#!/bin/sh\nif [ "$3" = labctl-nopass ]; then echo "sudo: a password is required" >&2; exit 1; fi\nexec /usr/bin/sudo "$@"\n',
    { mode: 0o755 },
  )
  sshd = await startSshd({ extraConfig: [`SetEnv PATH=${bin}:/usr/sbin:/usr/bin:/sbin:/bin`] })
})

afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()))
})

afterAll(async () => {
  await sshd?.stop()
  if (work) rmSync(work, { recursive: true, force: true })
})

describe('shellQuote', () => {
  it('quotes each argument as one literal POSIX word', async () => {
    expect(shellQuote(['ls', '-la', '/etc/trivy'])).toBe('ls -la /etc/trivy')
    expect(shellQuote(['echo', "it's", '', 'a b', '$(x)', '=cmd'])).toBe(`echo 'it'\\''s' '' 'a b' '$(x)' '=cmd'`)
    // Round trip through a real local sh.
    const args = ["it's", '"dq"', '$HOME', '`id`', 'a\nb', '*', '~', ';', '\\', '']
    const r = await execa('sh', ['-c', `printf '%s\\0' ${shellQuote(args)}`])
    expect(r.stdout.split('\0').slice(0, -1)).toEqual(args)
    expect(() => shellQuote([])).toThrow(LabctlError)
    expect(() => shellQuote(['a\0b'])).toThrow(LabctlError)
  })
})

describe('running commands', () => {
  it('returns exit code, stdout and stderr', async () => {
    const p = pool()
    const r = await p.run(target(), ['sh', '-c', 'echo out; echo err >&2; exit 3'])
    expect(r).toMatchObject({ code: 3, stdout: 'out\n', stderr: 'err\n' })
    const who = await p.run(target(), ['id', '-un'])
    expect(who).toMatchObject({ code: 0, stdout: `${sshd.user}\n` })
    const e = await failure(p.run(target(), ['false'], { check: true }))
    expect(e.code).toBe('SSH_COMMAND_FAILED')
    expect(e.message).toContain('exit 1')
  })

  it('passes shell metacharacters through literally', async () => {
    const marker = join(work, `pwned-${randomBytes(4).toString('hex')}`)
    const args = [
      `$(touch ${marker})`,
      `\`touch ${marker}\``,
      `; touch ${marker}`,
      `&& touch ${marker} ||`,
      `| touch ${marker}`,
      `> ${marker}`,
      `it's "quoted" 'twice'`,
      'spaces  inside  ',
      'new\nline',
      '*',
      '~',
      '$HOME',
      '',
      '=ls',
      '\\back\\slash',
    ]
    const r = await pool().run(target(), ['printf', '%s\\n', ...args])
    expect(r.code).toBe(0)
    expect(r.stdout).toBe(args.map((a) => `${a}\n`).join(''))
    expect(existsSync(marker), 'a metacharacter was interpreted by the remote shell').toBe(false)
  })

  it('sends stdin and EOF', async () => {
    const p = pool()
    const secret = `s3cret-${randomBytes(8).toString('hex')}\nline2 ünïcode`
    const r = await p.run(target(), ['cat'], { stdin: secret })
    expect(r).toMatchObject({ code: 0, stdout: secret })
    const big = Buffer.alloc(3 * 1024 * 1024, 'x')
    const wc = await p.run(target(), ['wc', '-c'], { stdin: big })
    expect(wc.stdout.trim()).toBe(String(big.length))
    // No stdin: the command sees EOF at once instead of hanging.
    const empty = await p.run(target(), ['cat'], { timeoutMs: 5000 })
    expect(empty).toMatchObject({ code: 0, stdout: '' })
  })

  it('refuses a secret in the argv', async () => {
    const e = await failure(pool().run(target(), ['echo', 'token=abc123'], { secrets: ['abc123'] }))
    expect(e.code).toBe('SSH_SECRET_IN_ARGV')
  })

  it('kills a command that outlives its timeout and keeps the connection', async () => {
    const p = pool()
    const t = target()
    await p.run(t, ['true'])
    const logins = await sshd.waitForLogins(0)
    const unique = `${37 + Math.floor(Math.random() * 1000)}.25`
    const started = Date.now()
    const e = await failure(p.run(t, ['sleep', unique], { timeoutMs: 500 }))
    expect(e.code).toBe('SSH_COMMAND_TIMEOUT')
    expect(e.message).toContain('500 ms')
    expect(Date.now() - started).toBeLessThan(5000)
    // The remote sleep got SIGKILL.
    for (let i = 0; i < 40 && processesWith(`sleep ${unique}`) > 0; i++) await sleep(50)
    expect(processesWith(`sleep ${unique}`)).toBe(0)
    // Same connection still works.
    expect((await p.run(t, ['echo', 'ok'])).stdout).toBe('ok\n')
    expect(sshd.logins()).toBe(logins)
  })
})

describe('connection pool', () => {
  it('uses one SSH connection for every step on a host', async () => {
    const before = await sshd.waitForLogins(0)
    const p = pool()
    const t = target()
    await p.run(t, ['true'])
    await p.run(t, ['echo', 'second'])
    await Promise.all(Array.from({ length: 8 }, (_, i) => p.run(t, ['echo', String(i)])))
    await p.writeFile(t, join(work, 'pooled.txt'), 'x', { mode: 0o644 })
    expect(p.handshakes).toBe(1)
    expect(await sshd.waitForLogins(before + 1)).toBe(before + 1)
    await sleep(200)
    expect(sshd.logins()).toBe(before + 1)
    await p.close()
    // After closeAll a new run opens a new connection.
    const p2 = pool()
    await p2.run(t, ['true'])
    expect(await sshd.waitForLogins(before + 2)).toBe(before + 2)
  })

  it('opens concurrent first connections to a host only once', async () => {
    const before = await sshd.waitForLogins(0)
    const p = pool()
    const t = target()
    const results = await Promise.all(Array.from({ length: 5 }, () => p.run(t, ['hostname'])))
    expect(results.every((r) => r.code === 0)).toBe(true)
    expect(p.handshakes).toBe(1)
    await sleep(200)
    expect(sshd.logins()).toBe(before + 1)
  })

  it('goes through a jump host (forwardOut) and verifies both host keys', async () => {
    const before = await sshd.waitForLogins(0)
    const p = pool()
    const r = await p.run(target({ jumpHost: `${sshd.user}@127.0.0.1:${sshd.port}` }), ['echo', 'via-jump'])
    expect(r.stdout).toBe('via-jump\n')
    expect(p.handshakes).toBe(2)
    expect(await sshd.waitForLogins(before + 2)).toBe(before + 2)
    const e = await failure(pool().run(target({ jumpHost: `127.0.0.1:${sshd.port}`, knownHostsFile: knownHosts([]) }), ['true']))
    expect(e.code).toBe('SSH_HOSTKEY_UNKNOWN')
  })
})

describe('connect failures', () => {
  it('connection refused', async () => {
    const [closed] = (await freePorts(1)) as [number]
    const e = await failure(pool().run(target({ port: closed }), ['true']))
    expect(e.code).toBe('SSH_CONN_REFUSED')
    expect(e.message).toContain(`127.0.0.1:${closed}`)
  })

  it('no SSH answer within the connect timeout', async () => {
    const sockets: Socket[] = []
    const server: Server = createServer((s) => sockets.push(s))
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const port = (server.address() as { port: number }).port
    try {
      const started = Date.now()
      const e = await failure(pool().run(target({ port, connectTimeoutMs: 400 }), ['true']))
      expect(e.code).toBe('SSH_TIMEOUT')
      expect(e.message).toContain('400 ms')
      expect(Date.now() - started).toBeLessThan(4000)
    } finally {
      sockets.forEach((s) => s.destroy())
      server.close()
    }
  })

  it('authentication refused, listing what was tried', async () => {
    const e = await failure(pool().run(target({ identityFile: sshd.wrongKey }), ['true']))
    expect(e.code).toBe('SSH_AUTH_REFUSED')
    expect(e.message).toContain(sshd.wrongKey)
    expect(e.message).toContain('publickey')
  })

  it('no credentials at all, and a missing identity file', async () => {
    const noCreds = await failure(pool().run(target({ identityFile: undefined }), ['true']))
    expect(noCreds.code).toBe('SSH_NO_CREDENTIALS')
    const missing = await failure(pool().run(target({ identityFile: join(work, 'nope') }), ['true']))
    expect(missing.code).toBe('SSH_IDENTITY')
  })

  it('authenticates through ssh-agent', async () => {
    const sock = join(work, `agent-${randomBytes(3).toString('hex')}.sock`)
    const agent: ChildProcess = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' })
    try {
      for (let i = 0; i < 100 && !existsSync(sock); i++) await sleep(20)
      await execa('ssh-add', [sshd.clientKey], { env: { SSH_AUTH_SOCK: sock } })
      const p = pool({ env: { HOME: join(work, 'home'), SSH_AUTH_SOCK: sock } })
      const r = await p.run(target({ identityFile: undefined }), ['echo', 'agent'])
      expect(r.stdout).toBe('agent\n')
      // Without the agent the same target has no credentials.
      await expect(pool().run(target({ identityFile: undefined }), ['true'])).rejects.toMatchObject({ code: 'SSH_NO_CREDENTIALS' })
    } finally {
      agent.kill()
    }
  })
})

describe('host key verification', () => {
  it('refuses an unknown host key, showing its SHA256 fingerprint', async () => {
    const kh = knownHosts([])
    const before = sshd.logins()
    const e = await failure(pool().run(target({ knownHostsFile: kh }), ['true']))
    expect(e.code).toBe('SSH_HOSTKEY_UNKNOWN')
    expect(e.message).toContain(await sshd.hostFingerprint())
    expect(e.suggestion).toContain('--accept-new-host-key')
    expect(existsSync(kh)).toBe(false)
    await sleep(100)
    expect(sshd.logins(), 'must not authenticate to an unverified host').toBe(before)
  })

  it('records a new host key with acceptNewHostKey, then uses it', async () => {
    const kh = knownHosts([])
    await pool({ acceptNewHostKey: true }).run(target({ knownHostsFile: kh }), ['true'])
    const text = readFileSync(kh, 'utf8')
    expect(text).toBe(`${sshd.knownHostsLine()}\n`)
    expect(statSync(kh).mode & 0o777).toBe(0o600)
    // OpenSSH itself finds the entry.
    const found = await execa('ssh-keygen', ['-F', `[127.0.0.1]:${sshd.port}`, '-f', kh], { reject: false })
    expect(found.exitCode).toBe(0)
    // A later run without the flag connects with the recorded key, and does not write again.
    await pool().run(target({ knownHostsFile: kh }), ['true'])
    await pool({ acceptNewHostKey: true }).run(target({ knownHostsFile: kh }), ['true'])
    expect(readFileSync(kh, 'utf8')).toBe(text)
  })

  it('records every name of an inventory host and connects to its address', async () => {
    const kh = knownHosts([])
    const host = HostSchema.parse({
      name: 'trivy-0',
      fqdn: 'trivy-0.sandbox.lab.test',
      address: '127.0.0.1',
      ssh: { port: sshd.port, identityFile: sshd.clientKey, knownHostsFile: kh },
    })
    const r = await pool({ acceptNewHostKey: true }).run(host, ['echo', 'inv'])
    expect(r.stdout).toBe('inv\n')
    const [names] = readFileSync(kh, 'utf8').split(' ')
    expect(names).toBe(`[trivy-0.sandbox.lab.test]:${sshd.port},[127.0.0.1]:${sshd.port}`)
  })

  it('accepts hashed known_hosts entries', async () => {
    const kh = knownHosts()
    await execa('ssh-keygen', ['-H', '-f', kh])
    expect(readFileSync(kh, 'utf8')).toMatch(/^\|1\|/)
    expect(readFileSync(kh, 'utf8')).not.toContain('127.0.0.1')
    const r = await pool().run(target({ knownHostsFile: kh }), ['echo', 'hashed'])
    expect(r.stdout).toBe('hashed\n')
    // A hashed entry for another port does not count.
    const other = knownHosts([sshd.knownHostsLine().replace(`]:${sshd.port}`, `]:${sshd.port === 2 ? 3 : 2}`)])
    await execa('ssh-keygen', ['-H', '-f', other])
    await expect(pool().run(target({ knownHostsFile: other }), ['true'])).rejects.toMatchObject({ code: 'SSH_HOSTKEY_UNKNOWN' })
  })

  it('always refuses a changed host key, even with acceptNewHostKey', async () => {
    const d2 = await startSshd()
    try {
      const kh = knownHosts([d2.knownHostsLine()])
      const t = { host: '127.0.0.1', port: d2.port, identityFile: d2.clientKey, knownHostsFile: kh }
      await pool().run(t, ['true'])
      const oldFp = await d2.hostFingerprint()
      await d2.regenerateHostKey()
      const newFp = await d2.hostFingerprint()
      expect(newFp).not.toBe(oldFp)
      const before = readFileSync(kh, 'utf8')
      const e = await failure(pool({ acceptNewHostKey: true }).run(t, ['true']))
      expect(e.code).toBe('SSH_HOSTKEY_CHANGED')
      expect(e.message).toContain(oldFp)
      expect(e.message).toContain(newFp)
      expect(e.suggestion).toContain('ssh-keygen -R')
      expect(readFileSync(kh, 'utf8')).toBe(before)
      expect(d2.logins()).toBe(1)
    } finally {
      await d2.stop()
    }
  })
})

describe('sudo', () => {
  it('maps sudo stderr to clear errors', () => {
    const ctx = { host: 'trivy-0', user: 'ops', exitCode: 1 }
    const pw = sudoFailure('sudo: a password is required\n', ctx)
    expect(pw?.code).toBe('SSH_SUDO_PASSWORD')
    expect(pw?.suggestion).toContain('NOPASSWD')
    expect(pw?.suggestion).toContain('ops')
    expect(sudoFailure('sudo: a terminal is required to read the password; either use the -S option', ctx)?.code).toBe('SSH_SUDO_PASSWORD')
    expect(sudoFailure('ops is not in the sudoers file.  This incident will be reported.', ctx)?.code).toBe('SSH_SUDO_DENIED')
    expect(sudoFailure('bash: line 1: sudo: command not found', { ...ctx, exitCode: 127 })?.code).toBe('SSH_SUDO_MISSING')
    expect(sudoFailure('grep: /etc/x: No such file or directory', ctx)).toBeUndefined()
  })

  it('runs through sudo -n, and fails clearly when sudo wants a password', async () => {
    const p = pool()
    const r = await p.run(target(), ['id', '-un'], { user: 'nobody' })
    expect(r).toMatchObject({ code: 0, stdout: 'nobody\n', command: 'sudo -n -u nobody -- id -un' })
    // Logged in as root, sudo: true needs no sudo at all.
    expect((await p.run(target(), ['id', '-u'], { sudo: true })).command).toBe('id -u')
    const e = await failure(p.run(target(), ['id'], { user: 'labctl-nopass' }))
    expect(e.code).toBe('SSH_SUDO_PASSWORD')
    expect(e.suggestion).toContain('NOPASSWD')
  })
})

describe('atomic file writes', () => {
  it('writes over SFTP with the mode, keeping the previous version as .prev', async () => {
    const dir = join(work, `conf-${randomBytes(3).toString('hex')}`)
    mkdirSync(dir)
    const file = join(dir, 'trivy.env')
    const p = pool()
    const t = target()
    await p.writeFile(t, file, 'TOKEN=one\n', { mode: 0o600 })
    expect(readFileSync(file, 'utf8')).toBe('TOKEN=one\n')
    expect(statSync(file).mode & 0o777).toBe(0o600)
    expect(existsSync(`${file}.prev`)).toBe(false)
    const firstIno = statSync(file).ino
    await p.writeFile(t, file, 'TOKEN=two\n', { mode: 0o600 })
    expect(readFileSync(file, 'utf8')).toBe('TOKEN=two\n')
    expect(statSync(file).mode & 0o777).toBe(0o600)
    expect(statSync(file).ino, 'the file must be replaced by rename, not rewritten in place').not.toBe(firstIno)
    expect(readFileSync(`${file}.prev`, 'utf8')).toBe('TOKEN=one\n')
    expect(statSync(`${file}.prev`).mode & 0o777).toBe(0o600)
    expect(readdirSync(dir).sort()).toEqual(['trivy.env', 'trivy.env.prev'])
    await p.writeFile(t, file, 'TOKEN=three\n', { mode: 0o640, keepPrevious: false })
    expect(readFileSync(`${file}.prev`, 'utf8')).toBe('TOKEN=one\n')
    expect(statSync(file).mode & 0o777).toBe(0o640)
  })

  it('installs with owner and group (install -o -g, then rename), keeping .prev', async () => {
    const dir = join(work, `etc-${randomBytes(3).toString('hex')}`)
    mkdirSync(dir)
    const file = join(dir, 'server.env')
    const p = pool()
    const t = target()
    await p.writeFile(t, file, 'A=1\n', { mode: 0o640, owner: 'nobody', group: 'root' })
    await p.writeFile(t, file, 'A=2\n', { mode: 0o600, owner: 'root', group: 'root' })
    const st = statSync(file)
    expect(readFileSync(file, 'utf8')).toBe('A=2\n')
    expect(st.mode & 0o777).toBe(0o600)
    expect(st.uid).toBe(0)
    const prev = statSync(`${file}.prev`)
    expect(readFileSync(`${file}.prev`, 'utf8')).toBe('A=1\n')
    expect(prev.mode & 0o777).toBe(0o640)
    expect(prev.uid).toBe(Number((await execa('id', ['-u', 'nobody'])).stdout))
    expect(readdirSync(dir).sort()).toEqual(['server.env', 'server.env.prev'])
  })

  it('fails clearly for a missing directory, leaving nothing behind', async () => {
    const e = await failure(pool().writeFile(target(), join(work, 'no-such-dir', 'x.env'), 'x', { mode: 0o600 }))
    expect(e.code).toBe('SSH_SFTP_FAILED')
    expect(e.message).toContain('no such file')
    const rel = await failure(pool().writeFile(target(), 'relative/x', 'x', { mode: 0o600 }))
    expect(rel.code).toBe('SSH_BAD_PATH')
    const owner = await failure(pool().writeFile(target(), join(work, 'x.env'), 'x', { mode: 0o600, owner: 'no-such-user-labctl' }))
    expect(owner.code).toBe('SSH_INSTALL_FAILED')
    expect(owner.message).toContain('no-such-user-labctl')
    expect(existsSync(join(work, 'x.env'))).toBe(false)
  })
})

describe('~/.ssh/config', () => {
  it('honours Host, HostName, User, Port, IdentityFile and ProxyJump', async () => {
    const cfgFile = join(work, 'ssh_config')
    writeFileSync(
      cfgFile,
      [
        'Host labtarget',
        '  HostName 127.0.0.1',
        `  Port ${sshd.port}`,
        `  User ${sshd.user}`,
        `  IdentityFile ${sshd.clientKey}`,
        'Host viajump',
        '  HostName 127.0.0.1',
        `  ProxyJump labtarget`,
        `  Port=${sshd.port}`,
        `  IdentityFile "${sshd.clientKey}"`,
        'Host *',
        '  User nobody-else',
        '  Port 1',
        '',
      ].join('\n'),
    )
    const p = pool({ sshConfigFile: cfgFile })
    const kh = knownHosts()
    const r = await p.run({ host: 'labtarget', knownHostsFile: kh }, ['id', '-un'])
    expect(r.stdout).toBe(`${sshd.user}\n`)
    const resolved = p.resolve({ host: 'viajump', knownHostsFile: kh })
    expect(resolved).toMatchObject({ host: '127.0.0.1', port: sshd.port, user: 'nobody-else' })
    expect(resolved.jump).toMatchObject({ host: '127.0.0.1', port: sshd.port, user: sshd.user })
    const j = await p.run({ host: 'viajump', user: sshd.user, knownHostsFile: kh }, ['echo', 'jumped'])
    expect(j.stdout).toBe('jumped\n')
  })

  it('matches Host patterns like OpenSSH', () => {
    const cfg = SshConfig.parse(
      ['Host *.lab.test !bad.lab.test', '  User ops', 'Host trivy-?', '  Port 2222', 'Match host x', '  User never', 'Host *', '  User fallback', '  IdentityFile ~/.ssh/%r_%h'].join('\n'),
      '/home/me',
    )
    expect(cfg.lookup(['trivy-0.lab.test', 'trivy-0'])).toMatchObject({ user: 'ops', port: 2222, identityFiles: ['~/.ssh/%r_%h'] })
    expect(cfg.lookup(['bad.lab.test']).user).toBe('fallback')
    expect(parseJumpSpec('ops@bastion:2200')).toEqual({ user: 'ops', host: 'bastion', port: 2200 })
    expect(parseJumpSpec('bastion')).toEqual({ host: 'bastion' })
    expect(() => parseJumpSpec('a b')).toThrow(LabctlError)
    expect(hostFieldMatches('*.lab.test,!evil.lab.test', 'a.lab.test')).toBe(true)
    expect(hostFieldMatches('*.lab.test,!evil.lab.test', 'evil.lab.test')).toBe(false)
    expect(hostFieldMatches('*.lab.test', '[a.lab.test]:2222')).toBe(false)
  })

  it('follows Include (relative to ~/.ssh, with wildcards)', () => {
    const home = join(work, 'home')
    mkdirSync(join(home, '.ssh', 'conf.d'), { recursive: true })
    writeFileSync(join(home, '.ssh', 'conf.d', '10-lab.conf'), 'Host trivy-*\n  Port 2200\n  ProxyJump ops@bastion:22\n')
    writeFileSync(join(home, '.ssh', 'conf.d', 'ignored.txt'), 'Host *\n  Port 9\n')
    const main = join(home, '.ssh', 'config')
    writeFileSync(main, 'Include conf.d/*.conf\nHost *\n  Port 2201\n')
    const cfg = SshConfig.load(main, home)
    expect(cfg.lookup(['trivy-0'])).toMatchObject({ port: 2200, proxyJump: 'ops@bastion:22' })
    expect(cfg.lookup(['other']).port).toBe(2201)
  })
})

describe('known_hosts', () => {
  it('refuses a key marked @revoked', async () => {
    const [type, b64] = readFileSync(sshd.hostKeyPub, 'utf8').trim().split(/\s+/)
    const kh = knownHosts([sshd.knownHostsLine(), `@revoked * ${type} ${b64}`])
    const verdict = verifyHostKey([kh], [`[127.0.0.1]:${sshd.port}`], Buffer.from(b64!, 'base64'))
    expect(verdict.status).toBe('revoked')
    const e = await failure(pool().run(target({ knownHostsFile: kh }), ['true']))
    expect(e.code).toBe('SSH_HOSTKEY_REVOKED')
  })
})

describe('the sandbox host trivy-0 (non-root login, sudo -n)', () => {
  it('runs as the inventory user, escalates with sudo -n and installs root-owned files', async () => {
    const sb = inject('sandbox')
    const inv = parseInventory(readFileSync(sb.inventory, 'utf8'), sb.inventory)
    const host = inv.trivy.hosts[0]!
    expect(host.ssh.user).not.toBe('root')
    const p = pool()
    expect((await p.run(host, ['id', '-un'])).stdout).toBe(`${host.ssh.user}\n`)
    const root = await p.run(host, ['id', '-u'], { sudo: true })
    expect(root).toMatchObject({ code: 0, stdout: '0\n', command: 'sudo -n -- id -u' })
    const dir = `/var/tmp/labctl-ssh-test-${randomBytes(3).toString('hex')}`
    await p.run(host, ['mkdir', '-m', '0755', dir], { sudo: true, check: true })
    try {
      const file = `${dir}/server.env`
      await p.writeFile(host, file, 'TOKEN=one\n', { mode: 0o600, owner: 'root', group: 'root' })
      await p.writeFile(host, file, 'TOKEN=two\n', { mode: 0o600, owner: 'root', group: 'root' })
      // The login user cannot read it; sudo can.
      expect((await p.run(host, ['cat', file])).code).not.toBe(0)
      expect((await p.readFile(host, file, { sudo: true })).toString()).toBe('TOKEN=two\n')
      expect((await p.readFile(host, `${file}.prev`, { sudo: true })).toString()).toBe('TOKEN=one\n')
      const ls = await p.run(host, ['stat', '-c', '%a %U %G %n', file, `${file}.prev`], { sudo: true, check: true })
      expect(ls.stdout).toBe(`600 root root ${file}\n600 root root ${file}.prev\n`)
      expect(p.handshakes).toBe(1)
    } finally {
      await p.run(host, ['rm', '-rf', '--', dir], { sudo: true })
    }
  })
})
