// The sandbox VM tier: a real Debian 12 guest (systemd 252, cloud-init, sshd) under QEMU on a private
// `sandbox up --net --bare` lab. Boot, host key from the seed (and a wrong one refused), the inventory
// entry, `trivy install` onto real systemd through to a passing validate, the unit's hardening as real
// systemd reports it, day 2 (check sees ufw inactive; enabled, it refuses the outsider; the real journal;
// a restart), a reboot survived with ufw still enforcing, and `down` leaving nothing. Every wait is bounded; the figures
// (image, boot, install, reboot) are printed for the time budget.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import type { SandboxStatus } from '../../src/sandbox/index.js'
import type { VmDownResult, VmRebootResult, VmState, VmStatus, VmUpResult } from '../../src/sandbox/vm/index.js'
import { vmSsh } from '../../src/sandbox/vm/index.js'
import { isAlive } from '../../src/sandbox/proc.js'
import { labctl, parseJson } from '../helpers.js'
import { probe } from '../sandbox/netlab-helpers.js'

const MIN = 60_000
const root = mkdtempSync(join(tmpdir(), 'labctl-vm-'))
const env = { XDG_CONFIG_HOME: join(root, 'config'), LABCTL_SANDBOX_DIR: join(root, 'sb') }
const figure = (what: string, ms: number): void => void process.stderr.write(`[vm] ${what}: ${(ms / 1000).toFixed(1)} s\n`)
let sandbox: SandboxStatus
let up: VmUpResult
let vm: VmState

const readVm = (): VmState => JSON.parse(readFileSync(join(env.LABCTL_SANDBOX_DIR, 'vm', 'state.json'), 'utf8')) as VmState
// A QEMU reparented to PID 1 may linger as a zombie until reaped: that is not running.
const alive = (pid: number): boolean => isAlive(pid)

beforeAll(async () => {
  const r = await labctl(['sandbox', 'up', '--net', '--bare', '--json'], { env, timeoutMs: 4 * MIN })
  expect(r.exitCode, r.stderr).toBe(0)
  sandbox = parseJson<SandboxStatus>(r.stdout)
}, 5 * MIN)

afterAll(async () => {
  await labctl(['sandbox', 'vm', 'down'], { env, timeoutMs: 2 * MIN })
  await labctl(['sandbox', 'down'], { env, timeoutMs: 2 * MIN })
  rmSync(root, { recursive: true, force: true })
}, 5 * MIN)

describe('sandbox vm (Debian 12 under QEMU on the lab network)', () => {
  it('boots from the cached image with the seed, answers SSH as trivy-vm on .40 of the lab, cloud-init done', async () => {
    const t = Date.now()
    const r = await labctl(['sandbox', 'vm', 'up', '--json'], { env, timeoutMs: 20 * MIN })
    expect(r.exitCode, `${r.stdout}\n${r.stderr}`).toBe(0)
    up = parseJson<VmUpResult>(r.stdout)
    if (up.image.built) figure('image build (debootstrap + mkfs.ext4 -d)', up.image.buildMs ?? 0)
    figure(`boot to SSH (${up.accel})`, up.bootMs ?? 0)
    figure('vm up in all', Date.now() - t)
    expect(up).toMatchObject({ changed: true, name: 'trivy-vm', cloudInit: 'status: done' })
    expect(['kvm', 'tcg']).toContain(up.accel)
    const prefix = sandbox.network!.subnet.replace(/\.0\/24$/, '')
    expect(up.address).toBe(`${prefix}.40`)
    // The serial console is logged under the sandbox's logs: the real systemd and cloud-init spoke there.
    const consoleLog = readFileSync(up.consoleLog, 'utf8')
    expect(up.consoleLog.startsWith(join(env.LABCTL_SANDBOX_DIR, 'logs'))).toBe(true)
    expect(consoleLog).toMatch(/systemd\[1\]: .*(Reached target|Started)/)
    expect(consoleLog).toMatch(/Cloud-init v\. \S+ running 'init'/)
    vm = readVm()
    expect(alive(vm.pid)).toBe(true)
    // A second `up` changes nothing.
    const again = await labctl(['sandbox', 'vm', 'up', '--json'], { env, timeoutMs: MIN })
    expect(again.exitCode, again.stderr).toBe(0)
    expect(parseJson<VmUpResult>(again.stdout)).toMatchObject({ changed: false, address: up.address })
  }, 22 * MIN)

  it('is a real systemd machine with the seeded host key; a different key for its address is refused', async () => {
    const st = await labctl(['sandbox', 'vm', 'status', '--json'], { env, timeoutMs: MIN })
    expect(st.exitCode, st.stderr).toBe(0)
    const s = parseJson<VmStatus>(st.stdout)
    expect(s).toMatchObject({ up: true, ssh: true, address: up.address })
    expect(['running', 'degraded']).toContain(s.systemd)
    const facts = await vmSsh(vm, ['sh', '-c', 'systemctl --version | head -n1; hostname; . /etc/os-release; echo $VERSION_CODENAME; cloud-init status'])
    expect(facts.ok, facts.stderr).toBe(true)
    const [systemd, hostname, codename, ci] = facts.stdout.trim().split('\n')
    expect(systemd).toMatch(/^systemd 252 /)
    expect(hostname).toBe('trivy-vm')
    expect(codename).toBe('bookworm')
    expect(ci).toBe('status: done')
    // The key in known_hosts is the one from the seed; with another key for the same names, ssh refuses.
    const other = join(root, 'other-key')
    await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', other], { timeout: 30_000 })
    const wrong = join(root, 'wrong_known_hosts')
    writeFileSync(wrong, `${up.address} ${readFileSync(`${other}.pub`, 'utf8').split(' ').slice(0, 2).join(' ')}\n`)
    const refused = await vmSsh({ ...vm, knownHosts: wrong }, ['true'])
    expect(refused.ok).toBe(false)
    expect(refused.stderr).toMatch(/host key|IDENTIFICATION HAS CHANGED/i)
  }, 3 * MIN)

  it('is in the sandbox inventory as scanner host trivy-vm, which the inventory loader accepts', async () => {
    const inv = parse(readFileSync(sandbox.inventory!, 'utf8')) as { trivy: { hosts: Array<{ name: string; address?: string; ssh: { user: string; knownHostsFile: string } }> } }
    expect(inv.trivy.hosts.map((h) => h.name)).toEqual(['trivy-0', 'trivy-vm'])
    const h = inv.trivy.hosts[1]!
    expect(h).toMatchObject({ address: up.address, ssh: { user: 'labops', knownHostsFile: vm.knownHosts } })
    expect(readFileSync(h.ssh.knownHostsFile, 'utf8')).toContain(up.address)
    const cv = await labctl(['config', 'validate', '--lab', 'sandbox'], { env })
    expect(cv.exitCode, cv.stdout + cv.stderr).toBe(0)
  })

  it('takes `trivy install --host trivy-vm --yes` from bare to a passing validate, the hardening enforced by real systemd', async () => {
    const t = Date.now()
    const r = await labctl(['--lab', 'sandbox', 'trivy', 'install', '--host', 'trivy-vm', '--yes'], { env, timeoutMs: 20 * MIN })
    figure('trivy install (bare VM → validate)', Date.now() - t)
    expect(r.exitCode, `${r.stdout}\n${r.stderr}`).toBe(0)
    const v = await labctl(['--lab', 'sandbox', 'trivy', 'validate', '--host', 'trivy-vm'], { env, timeoutMs: 5 * MIN })
    expect(v.exitCode, v.stdout + v.stderr).toBe(0)
    // Real systemd applied the unit's sandboxing: the properties as loaded, and systemd-analyze's exposure.
    const show = await vmSsh(vm, ['systemctl', 'show', 'trivy-server', '-p', 'ActiveState', '-p', 'NoNewPrivileges', '-p', 'ProtectSystem', '-p', 'PrivateTmp', '-p', 'ReadWritePaths', '-p', 'User'])
    expect(show.ok, show.stderr).toBe(true)
    const props = Object.fromEntries(show.stdout.trim().split('\n').map((l) => l.split('=', 2) as [string, string]))
    expect(props).toMatchObject({ ActiveState: 'active', NoNewPrivileges: 'yes', ProtectSystem: 'strict', PrivateTmp: 'yes', ReadWritePaths: '/var/lib/trivy', User: 'trivy' })
    // `trivy status` reports systemd-analyze's exposure for the unit, the same figure systemd-analyze gives here.
    const st = await labctl(['--lab', 'sandbox', 'trivy', 'status', '--host', 'trivy-vm', '--json', '--timeout', String(2 * MIN)], { env, timeoutMs: 3 * MIN })
    expect(st.exitCode, st.stdout + st.stderr).toBe(0)
    const security = parseJson<{ hosts: Array<{ host: string; security?: { exposure: number; rating: string } }> }>(st.stdout).hosts[0]!.security
    expect(security, st.stdout).toBeDefined()
    process.stderr.write(`[vm] systemd-analyze security trivy-server.service: exposure ${security!.exposure} ${security!.rating}\n`)
    const sec = await vmSsh(vm, ['systemd-analyze', 'security', '--no-pager', 'trivy-server.service'], { timeoutMs: 2 * MIN })
    expect(sec.stdout).toContain(`Overall exposure level for trivy-server.service: ${security!.exposure}`)
    // An unhardened service scores 9.6 ("UNSAFE"); the hardened unit must do clearly better.
    expect(security!.exposure).toBeLessThan(7)
    // The process really runs with no_new_privs, as the trivy user.
    const proc = await vmSsh(vm, ['sh', '-c', 'p=$(systemctl show -p MainPID --value trivy-server); grep NoNewPrivs /proc/$p/status; ps -o user= -p $p'])
    expect(proc.stdout).toMatch(/NoNewPrivs:\s+1/)
    expect(proc.stdout).toMatch(/^trivy$/m)
  }, 25 * MIN)

  it('day 2 on real systemd: check sees ufw inactive, the operator enables it, the outsider is refused; check, logs, restart', async () => {
    type Checked = { checks: Array<{ check: string; status: string; detail: string }> }
    const check = async () => {
      const r = await labctl(['--lab', 'sandbox', 'trivy', 'check', '--host', 'trivy-vm', '--json', '--timeout', String(MIN)], { env, timeoutMs: 2 * MIN })
      expect([0, 3], r.stdout + r.stderr).toContain(r.exitCode)
      return Object.fromEntries(parseJson<Checked>(r.stdout).checks.map((c) => [c.check, c]))
    }
    // Debian (like Ubuntu) ships ufw inactive: install wrote its rules, but nothing enforces them yet.
    let c = await check()
    expect(c.firewall).toMatchObject({ status: 'fail', detail: expect.stringMatching(/ufw is not active/) })
    expect(c['db-file']).toMatchObject({ status: 'pass' })
    const ns = (n: string): string => sandbox.network!.nodes.find((x) => x.name === n)!.namespace
    expect(await probe(ns('outsider'), up.address, 4954)).toBe('open')
    // What the operator does (install never enables a firewall by itself: it could cut off SSH).
    const enable = await vmSsh(vm, ['sudo', '-n', 'sh', '-c', 'ufw allow 22/tcp >/dev/null && ufw --force enable'], { timeoutMs: MIN })
    expect(enable.ok, enable.stderr).toBe(true)
    expect(await probe(ns('outsider'), up.address, 4954)).toBe('timeout')
    expect(await probe(ns('agent'), up.address, 4954)).toBe('open')
    expect(await probe(ns('edge'), up.address, 4954)).toBe('open')
    c = await check()
    expect(c.firewall).toMatchObject({ status: 'pass', detail: expect.stringMatching(/^ufw: port 4954\/tcp open to /) })
    // The real journal.
    const logs = await labctl(['--lab', 'sandbox', 'trivy', 'logs', '--host', 'trivy-vm', '-n', '50'], { env, timeoutMs: 2 * MIN })
    expect(logs.exitCode, logs.stderr).toBe(0)
    expect(logs.stdout).toMatch(/Listening|Starting|trivy/i)
    // A restart through real systemd: a new main PID, answering again directly and through the edge.
    const pid = async () => (await vmSsh(vm, ['systemctl', 'show', '-p', 'MainPID', '--value', 'trivy-server'])).stdout.trim()
    const before = await pid()
    const rs = await labctl(['--lab', 'sandbox', 'trivy', 'restart', '--host', 'trivy-vm', '--yes'], { env, timeoutMs: 5 * MIN })
    expect(rs.exitCode, rs.stdout + rs.stderr).toBe(0)
    expect(await pid()).not.toBe(before)
  }, 15 * MIN)

  it('survives `sandbox vm reboot`: a new boot, the service back, validate passing', async () => {
    const r = await labctl(['sandbox', 'vm', 'reboot', '--json'], { env, timeoutMs: 17 * MIN })
    expect(r.exitCode, `${r.stdout}\n${r.stderr}`).toBe(0)
    const rb = parseJson<VmRebootResult>(r.stdout)
    figure('reboot to SSH', rb.downtimeMs)
    expect(rb.bootId).not.toBe(rb.previousBootId)
    // The service is enabled, so systemd starts it on boot; give it a bounded while to answer.
    let state = ''
    for (let i = 0; i < 60 && state !== 'active'; i++) {
      state = (await vmSsh(vm, ['systemctl', 'is-active', 'trivy-server'])).stdout.trim()
      if (state !== 'active') await new Promise((res) => setTimeout(res, 3000))
    }
    expect(state).toBe('active')
    let v = await labctl(['--lab', 'sandbox', 'trivy', 'validate', '--host', 'trivy-vm'], { env, timeoutMs: 5 * MIN })
    for (let i = 0; i < 10 && v.exitCode !== 0; i++) {
      await new Promise((res) => setTimeout(res, 5000))
      v = await labctl(['--lab', 'sandbox', 'trivy', 'validate', '--host', 'trivy-vm'], { env, timeoutMs: 5 * MIN })
    }
    expect(v.exitCode, v.stdout + v.stderr).toBe(0)
    // ufw, enabled before the reboot, is back with it: the outsider is still refused.
    expect(await probe(sandbox.network!.nodes.find((x) => x.name === 'outsider')!.namespace, up.address, 4954)).toBe('timeout')
  }, 25 * MIN)

  it('`sandbox vm down` stops QEMU, removes the tap, the files, the inventory host and the edge server', async () => {
    const r = await labctl(['sandbox', 'vm', 'down', '--json'], { env, timeoutMs: 2 * MIN })
    expect(r.exitCode, r.stderr).toBe(0)
    const d = parseJson<VmDownResult>(r.stdout)
    expect(d.leftover).toEqual([])
    expect(d.stopped).toEqual(expect.arrayContaining([`qemu pid ${vm.pid}`, `tap ${vm.link.tap}`, 'inventory host trivy-vm', 'dns record trivy-vm.sandbox.lab.test', 'edge server trivy-vm']))
    expect(alive(vm.pid)).toBe(false)
    const tap = await execa('ip', ['-n', vm.link.switchNs, 'link', 'show', vm.link.tap], { reject: false, timeout: 10_000 })
    expect(tap.exitCode).not.toBe(0)
    expect(existsSync(join(env.LABCTL_SANDBOX_DIR, 'vm'))).toBe(false)
    const inv = parse(readFileSync(sandbox.inventory!, 'utf8')) as { trivy: { hosts: Array<{ name: string }> } }
    expect(inv.trivy.hosts.map((h) => h.name)).toEqual(['trivy-0'])
    expect(readFileSync(join(env.LABCTL_SANDBOX_DIR, 'haproxy.cfg'), 'utf8')).not.toMatch(/server trivy-vm/)
    const st = await labctl(['sandbox', 'vm', 'status'], { env })
    expect(st.exitCode).toBe(3)
    // And again: nothing to do, nothing left.
    const again = await labctl(['sandbox', 'vm', 'down', '--json'], { env, timeoutMs: MIN })
    expect(again.exitCode, again.stderr).toBe(0)
    expect(parseJson<VmDownResult>(again.stdout)).toEqual({ stopped: [], leftover: [] })
  }, 5 * MIN)
})
