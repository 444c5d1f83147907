// `labctl sandbox vm up | down | status | reboot`: a real Debian 12 VM (systemd, cloud-init, sshd) under
// QEMU, one more machine "trivy-vm" on the sandbox's lab network, added to the sandbox inventory as a
// scanner host. Its state lives in <sandbox dir>/vm/, its serial console in <sandbox dir>/logs/.
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { execa } from 'execa'
import { LabctlError, oneLine } from '../../errors.js'
import { hostPaths, HOST_USER } from '../host.js'
import { readState, sandboxDir, sandboxPaths, SANDBOX_NAMES, writeState, type SandboxState } from '../layout.js'
import { isAlive } from '../proc.js'
import { shellQuote } from '../../ssh/quote.js'
import { ensureVmImage, vmCacheRoot } from './image.js'
import { addVmHost, removeVmHost } from './inventory.js'
import { vmLink, VM_NAME, type VmLink } from './link.js'
import { chooseAccel, startQemu, stopQemu, type Accel } from './qemu.js'
import { buildSeed } from './seed.js'

export type Progress = (msg: string) => void

export type VmState = {
  name: string
  pid: number
  accel: Accel
  accelReason: string
  address: string
  fqdn: string
  user: string
  identityFile: string
  knownHosts: string
  hostKeyFingerprint: string
  link: VmLink
  imageHash: string
  instanceId: string
  consoleLog: string
  monitor: string
  startedAt: string
  bootMs?: number
}

export function vmPaths(sandbox: string) {
  const dir = join(sandbox, 'vm')
  return {
    dir,
    state: join(dir, 'state.json'),
    disk: join(dir, 'disk.qcow2'),
    hostKey: join(dir, 'ssh_host_ed25519_key'),
    knownHosts: join(dir, 'known_hosts'),
    monitor: join(dir, 'monitor.sock'),
    pidFile: join(dir, 'qemu.pid'),
    consoleLog: join(sandboxPaths(sandbox).logs, `${VM_NAME}-console.log`),
  }
}

export function readVmState(sandbox: string): VmState | undefined {
  try {
    return JSON.parse(readFileSync(vmPaths(sandbox).state, 'utf8')) as VmState
  } catch {
    return undefined
  }
}

function writeVmState(sandbox: string, s: VmState): void {
  writeFileSync(vmPaths(sandbox).state, `${JSON.stringify(s, null, 2)}\n`, { mode: 0o600 })
}

/**
 * The VM's place in the lab's services: an A record for its FQDN in the lab's DNS (dnsmasq), and a
 * second server of the edge's Trivy backend (HAProxy, health-checked like trivy-0) so validate's checks
 * by name and through the public name reach it. A part is restarted only when its records change and
 * it runs. `undefined` takes the VM out again.
 */
async function registerInLab(dir: string, vm: { name: string; fqdn: string; address: string } | undefined): Promise<string[]> {
  const state = readState(dir)
  if (!state) return []
  const name = vm?.name ?? VM_NAME
  const fqdn = vm?.fqdn ?? `${VM_NAME}.${SANDBOX_NAMES.domain}`
  const edgeBefore = JSON.stringify(state.edgeServers ?? [])
  const dnsBefore = JSON.stringify(state.dnsRecords)
  state.edgeServers = [...(state.edgeServers ?? []).filter((e) => e.name !== name), ...(vm ? [{ name, address: vm.address, port: 4954 }] : [])]
  state.dnsRecords = [...state.dnsRecords.filter((r) => r.name !== fqdn), ...(vm ? [{ name: fqdn, address: vm.address }] : [])]
  const changed: Array<'dns' | 'haproxy'> = []
  if (JSON.stringify(state.dnsRecords) !== dnsBefore) changed.push('dns')
  if (JSON.stringify(state.edgeServers) !== edgeBefore) changed.push('haproxy')
  if (!changed.length) return []
  writeState(state)
  const { restartComponent } = await import('../components.js')
  for (const part of changed) if (isAlive(state.pids[part])) await restartComponent(part, state)
  return changed.map((p) => (p === 'dns' ? `dns record ${fqdn}` : `edge server ${name}`))
}

function requireSandbox(dir: string): SandboxState {
  const state = readState(dir)
  if (!state) throw new LabctlError('the sandbox is not up', { code: 'VM_NO_SANDBOX', suggestion: 'run `labctl sandbox up --net` first (as root)' })
  return state
}

/** ssh(1) to the VM, host key checked against the VM's known_hosts only, the sandbox key only, no agent or config. */
export async function vmSsh(vm: Pick<VmState, 'address' | 'user' | 'identityFile' | 'knownHosts'>, remote: string[], opts: { timeoutMs?: number; connectTimeoutS?: number } = {}) {
  const args = [
    '-F', '/dev/null',
    '-o', 'BatchMode=yes',
    '-o', 'StrictHostKeyChecking=yes',
    '-o', `UserKnownHostsFile=${vm.knownHosts}`,
    '-o', 'GlobalKnownHostsFile=/dev/null',
    '-o', 'IdentitiesOnly=yes',
    '-o', 'IdentityAgent=none',
    '-o', `ConnectTimeout=${opts.connectTimeoutS ?? 5}`,
    '-o', 'ServerAliveInterval=5',
    '-o', 'ServerAliveCountMax=3',
    '-o', 'LogLevel=ERROR',
    '-i', vm.identityFile,
    '-l', vm.user,
    vm.address,
    '--', shellQuote(remote),
  ]
  const r = await execa('ssh', args, { timeout: opts.timeoutMs ?? 30_000, reject: false, stdin: 'ignore' })
  return { ok: r.exitCode === 0, exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr), timedOut: Boolean(r.timedOut) }
}

function consoleTail(path: string, lines = 3): string {
  if (!existsSync(path)) return ''
  return readFileSync(path, 'utf8').replace(/\r/g, '').replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').trim().split('\n').slice(-lines).join(' | ')
}

/** Waits (bounded) until the VM takes an SSH login with the sandbox key and a verified host key; returns its boot id. */
async function waitForSsh(vm: VmState, deadline: number, opts: { notBootId?: string } = {}): Promise<string> {
  let last = 'no answer yet'
  for (let attempt = 0; Date.now() < deadline; attempt++) {
    if (!isAlive(vm.pid)) {
      throw new LabctlError(`VM: QEMU exited while waiting for SSH (console: ${oneLine(consoleTail(vm.consoleLog), 200)})`, { code: 'VM_BOOT', suggestion: `see ${vm.consoleLog}` })
    }
    const r = await vmSsh(vm, ['cat', '/proc/sys/kernel/random/boot_id'], { timeoutMs: 20_000 })
    const bootId = r.stdout.trim()
    if (r.ok && bootId && bootId !== opts.notBootId) return bootId
    if (/host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED/i.test(r.stderr)) {
      throw new LabctlError(`VM: ${vm.address} offered a host key other than the one in its seed (${vm.hostKeyFingerprint})`, { code: 'VM_HOST_KEY', suggestion: 'run `labctl sandbox vm down` and `labctl sandbox vm up`; check that nothing else uses the address' })
    }
    last = r.ok ? 'still the previous boot' : oneLine(r.stderr || `exit ${r.exitCode}`, 120) || `exit ${r.exitCode}`
    await sleep(Math.min(3000, Math.max(0, deadline - Date.now())))
  }
  throw new LabctlError(`VM: no SSH login on ${vm.address} in time (last: ${last}; console: ${oneLine(consoleTail(vm.consoleLog), 160)})`, {
    code: 'VM_BOOT',
    suggestion: `see ${vm.consoleLog}; raise the wait with --timeout, or run \`labctl sandbox vm down\` and retry`,
  })
}

async function ip(args: string[]): Promise<{ ok: boolean; err: string }> {
  const r = await execa('ip', args, { timeout: 10_000, reject: false, stdin: 'ignore' })
  return { ok: r.exitCode === 0, err: String(r.stderr) }
}

async function tapPresent(link: VmLink): Promise<boolean> {
  return (await ip(['-n', link.switchNs, 'link', 'show', link.tap])).ok
}

export type VmUpResult = {
  changed: boolean
  name: string
  address: string
  accel: Accel
  accelReason: string
  image: { hash: string; built: boolean; buildMs?: number; kernelVersion: string }
  bootMs?: number
  cloudInit?: string
  consoleLog: string
  inventory: string
  hostKeyFingerprint: string
  durationMs: number
}

export async function vmUp(opts: { dir?: string; progress?: Progress; bootTimeoutMs?: number } = {}): Promise<VmUpResult> {
  const started = Date.now()
  const dir = opts.dir ?? sandboxDir()
  const progress = opts.progress ?? (() => {})
  const sandbox = requireSandbox(dir)
  const link = vmLink(sandbox)
  const vp = vmPaths(dir)
  const existing = readVmState(dir)
  if (existing && isAlive(existing.pid)) {
    return {
      changed: false, name: existing.name, address: existing.address, accel: existing.accel, accelReason: existing.accelReason,
      image: { hash: existing.imageHash, built: false, kernelVersion: '' }, ...(existing.bootMs ? { bootMs: existing.bootMs } : {}),
      consoleLog: existing.consoleLog, inventory: sandbox.inventoryPath, hostKeyFingerprint: existing.hostKeyFingerprint, durationMs: Date.now() - started,
    }
  }
  if (existing || existsSync(vp.dir)) {
    progress('VM: left over from an earlier run: removing it first')
    await vmDown({ dir })
  }
  if (process.getuid?.() !== 0) throw new LabctlError('the sandbox VM needs root (its tap on the lab bridge)', { code: 'VM_NEEDS_ROOT', suggestion: 'run `sudo labctl sandbox vm up`, or as root' })
  const image = await ensureVmImage({ progress })
  const accel = await chooseAccel({ kernel: image.kernel, cacheDir: vmCacheRoot() })
  progress(`VM: accelerator ${accel.accel} (${accel.reason}${accel.cached ? ', measured earlier this boot' : ''})`)

  mkdirSync(vp.dir, { recursive: true, mode: 0o700 })
  mkdirSync(sandboxPaths(dir).logs, { recursive: true, mode: 0o700 })
  const clientKey = hostPaths(sandboxPaths(dir)).clientKey
  if (!existsSync(`${clientKey}.pub`)) throw new LabctlError(`the sandbox's SSH key ${clientKey}.pub is missing`, { code: 'VM_NO_SANDBOX', suggestion: 'run `labctl sandbox down` and `labctl sandbox up --net`' })
  // The VM's host key, made here and handed to it in its seed: known_hosts is right before the first connection.
  const kg = await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `${VM_NAME} host key`, '-f', vp.hostKey], { timeout: 30_000, reject: false, stdin: 'ignore' })
  if (kg.exitCode !== 0) throw new LabctlError(`VM: ssh-keygen failed: ${oneLine(String(kg.stderr), 200)}`, { code: 'VM_SEED' })
  const hostPub = readFileSync(`${vp.hostKey}.pub`, 'utf8').trim()
  const [ktype, kblob] = hostPub.split(/\s+/)
  const fqdn = `${VM_NAME}.${SANDBOX_NAMES.domain}`
  writeFileSync(vp.knownHosts, `${fqdn},${VM_NAME},${link.address} ${ktype} ${kblob}\n`, { mode: 0o600 })
  const fp = (await execa('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${vp.hostKey}.pub`], { timeout: 10_000, reject: false })).stdout.split(/\s+/)[1] ?? ''
  const instanceId = `${VM_NAME}-${randomBytes(4).toString('hex')}`
  const seed = await buildSeed(vp.dir, {
    hostname: VM_NAME,
    instanceId,
    user: HOST_USER,
    authorizedKey: readFileSync(`${clientKey}.pub`, 'utf8'),
    hostKey: { privatePem: readFileSync(vp.hostKey, 'utf8'), publicLine: hostPub },
    link,
    ...(existsSync(sandboxPaths(dir).caCert) ? { caPem: readFileSync(sandboxPaths(dir).caCert, 'utf8') } : {}),
  })
  const qi = await execa('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', image.disk, vp.disk], { timeout: 30_000, reject: false, stdin: 'ignore' })
  if (qi.exitCode !== 0) throw new LabctlError(`VM: qemu-img create failed: ${oneLine(String(qi.stderr), 200)}`, { code: 'VM_QEMU', suggestion: 'run `./scripts/setup.sh` (qemu-utils)' })

  const vm: VmState = {
    name: VM_NAME, pid: 0, accel: accel.accel, accelReason: accel.reason, address: link.address, fqdn, user: HOST_USER, identityFile: clientKey,
    knownHosts: vp.knownHosts, hostKeyFingerprint: fp, link, imageHash: image.hash, instanceId, consoleLog: vp.consoleLog, monitor: vp.monitor, startedAt: new Date().toISOString(),
  }
  writeVmState(dir, vm)
  try {
    const t = await ip(['-n', link.switchNs, 'tuntap', 'add', 'dev', link.tap, 'mode', 'tap'])
    if (!t.ok) throw new LabctlError(`VM: cannot make the tap ${link.tap} in ${link.switchNs}: ${oneLine(t.err, 200)}`, { code: 'VM_NET', suggestion: 'check `labctl sandbox status` (the lab network must be up)' })
    const m = await ip(['-n', link.switchNs, 'link', 'set', link.tap, 'master', link.bridge, 'up'])
    if (!m.ok) throw new LabctlError(`VM: cannot put ${link.tap} on ${link.bridge}: ${oneLine(m.err, 200)}`, { code: 'VM_NET' })
    writeFileSync(vp.consoleLog, '', { mode: 0o600 })
    const bootStart = Date.now()
    progress(`VM: booting Debian ${image.kernelVersion} under ${accel.accel} as ${VM_NAME} (${link.address} on ${link.bridge}); console → ${vp.consoleLog}`)
    vm.pid = await startQemu(['nsenter', `--net=/run/netns/${link.switchNs}`, '--'], {
      accel: accel.accel, kernel: image.kernel, initrd: image.initrd, disk: vp.disk, seed, tap: link.tap, mac: link.mac,
      consoleLog: vp.consoleLog, monitor: vp.monitor, pidFile: vp.pidFile,
    })
    writeVmState(dir, vm)
    const timeout = opts.bootTimeoutMs ?? (accel.accel === 'kvm' ? 180_000 : 900_000)
    await waitForSsh(vm, bootStart + timeout)
    vm.bootMs = Date.now() - bootStart
    progress(`VM: SSH login as ${vm.user}@${vm.address} after ${(vm.bootMs / 1000).toFixed(1)} s (host key ${fp}, from the seed)`)
    const ci = await vmSsh(vm, ['cloud-init', 'status', '--wait'], { timeoutMs: Math.max(30_000, bootStart + timeout - Date.now()) })
    const cloudInit = oneLine(ci.stdout.replace(/^\.+/gm, ''), 200)
    // 0: done; 2: done with recoverable errors (reported); anything else is a failed first boot.
    if (ci.exitCode !== 0 && ci.exitCode !== 2) {
      throw new LabctlError(`VM: cloud-init did not finish cleanly (exit ${ci.exitCode}): ${cloudInit || oneLine(ci.stderr, 200)}`, { code: 'VM_CLOUD_INIT', suggestion: `see ${vp.consoleLog}` })
    }
    writeVmState(dir, vm)
    const registered = await registerInLab(dir, { name: VM_NAME, fqdn, address: link.address })
    if (registered.length) progress(`VM: in the lab's services: ${registered.join(', ')}`)
    addVmHost(sandbox.inventoryPath, { name: VM_NAME, fqdn, address: link.address, user: HOST_USER, identityFile: clientKey, knownHostsFile: vp.knownHosts })
    return {
      changed: true, name: VM_NAME, address: link.address, accel: accel.accel, accelReason: accel.reason,
      image: { hash: image.hash, built: image.built, ...(image.buildMs ? { buildMs: image.buildMs } : {}), kernelVersion: image.kernelVersion },
      bootMs: vm.bootMs, cloudInit: `${cloudInit}${ci.exitCode === 2 ? ' (recoverable errors)' : ''}`, consoleLog: vp.consoleLog, inventory: sandbox.inventoryPath,
      hostKeyFingerprint: fp, durationMs: Date.now() - started,
    }
  } catch (err) {
    // All or nothing: QEMU, the tap and the VM's files go; the console log stays for the post-mortem.
    await vmDown({ dir }).catch(() => undefined)
    throw err
  }
}

export type VmDownResult = { stopped: string[]; leftover: string[] }

/** Stops QEMU, removes the tap, the VM's files and its inventory entry. Safe to run twice. */
export async function vmDown(opts: { dir?: string } = {}): Promise<VmDownResult> {
  const dir = opts.dir ?? sandboxDir()
  const vp = vmPaths(dir)
  const vm = readVmState(dir)
  const sandbox = readState(dir)
  const stopped: string[] = []
  const leftover: string[] = []
  let pid = vm?.pid
  if (!pid && existsSync(vp.pidFile)) pid = Number.parseInt(readFileSync(vp.pidFile, 'utf8').trim(), 10) || undefined
  if (pid && isAlive(pid)) {
    if (await stopQemu(pid)) stopped.push(`qemu pid ${pid}`)
    else leftover.push(`qemu pid ${pid}`)
  }
  const link = vm?.link ?? (sandbox?.net ? vmLink(sandbox) : undefined)
  if (link && existsSync(`/run/netns/${link.switchNs}`) && (await tapPresent(link))) {
    const r = await ip(['-n', link.switchNs, 'link', 'del', link.tap])
    if (r.ok) stopped.push(`tap ${link.tap}`)
    if (await tapPresent(link)) leftover.push(`tap ${link.tap}`)
  }
  if (sandbox && existsSync(sandbox.inventoryPath) && removeVmHost(sandbox.inventoryPath)) stopped.push('inventory host trivy-vm')
  if (sandbox) stopped.push(...(await registerInLab(dir, undefined).catch(() => [])))
  if (existsSync(vp.dir)) {
    rmSync(vp.dir, { recursive: true, force: true })
    if (existsSync(vp.dir)) leftover.push(vp.dir)
  }
  return { stopped, leftover }
}

export type VmStatus = {
  up: boolean
  name: string
  address?: string
  pid?: number
  running: boolean
  ssh: boolean
  systemd?: string
  kernel?: string
  uptimeS?: number
  bootId?: string
  accel?: Accel
  consoleLog?: string
  detail: string
}

export async function vmStatus(opts: { dir?: string } = {}): Promise<VmStatus> {
  const dir = opts.dir ?? sandboxDir()
  const vm = readVmState(dir)
  if (!vm) return { up: false, name: VM_NAME, running: false, ssh: false, detail: 'not started (run `labctl sandbox vm up`)' }
  const running = isAlive(vm.pid)
  const base = { name: vm.name, address: vm.address, pid: vm.pid, running, accel: vm.accel, consoleLog: vm.consoleLog }
  if (!running) return { ...base, up: false, ssh: false, detail: 'QEMU is not running (run `labctl sandbox vm down`, then `up`)' }
  const r = await vmSsh(vm, ['sh', '-c', 'systemctl is-system-running; uname -r; cut -d" " -f1 /proc/uptime; cat /proc/sys/kernel/random/boot_id'], { timeoutMs: 20_000 })
  const [systemd, kernel, uptime, bootId] = r.stdout.trim().split('\n')
  if (!kernel) return { ...base, up: false, ssh: false, detail: `QEMU runs, SSH does not answer: ${oneLine(r.stderr || `exit ${r.exitCode}`, 160)}` }
  const up = systemd === 'running' || systemd === 'degraded'
  return {
    ...base, up, ssh: true, systemd: systemd ?? '', kernel, uptimeS: Math.round(Number(uptime)), ...(bootId ? { bootId } : {}),
    detail: `${vm.address}, systemd ${systemd}, kernel ${kernel}, up ${Math.round(Number(uptime))} s, ${vm.accel}`,
  }
}

export type VmRebootResult = { name: string; downtimeMs: number; previousBootId: string; bootId: string }

/** `systemctl reboot` on the VM over SSH (a real reboot through systemd; QEMU keeps running), then waits for a login on the new boot. */
export async function vmReboot(opts: { dir?: string; progress?: Progress; timeoutMs?: number } = {}): Promise<VmRebootResult> {
  const dir = opts.dir ?? sandboxDir()
  const progress = opts.progress ?? (() => {})
  const vm = readVmState(dir)
  if (!vm || !isAlive(vm.pid)) throw new LabctlError('the sandbox VM is not running', { code: 'VM_DOWN', suggestion: 'run `labctl sandbox vm up`' })
  const before = await vmSsh(vm, ['cat', '/proc/sys/kernel/random/boot_id'], { timeoutMs: 20_000 })
  const previousBootId = before.stdout.trim()
  if (!before.ok || !previousBootId) throw new LabctlError(`the sandbox VM does not answer SSH: ${oneLine(before.stderr, 160)}`, { code: 'VM_DOWN', suggestion: 'run `labctl sandbox vm status`' })
  const started = Date.now()
  progress(`VM: systemctl reboot (boot ${previousBootId.slice(0, 8)})`)
  // The connection drops as the VM goes down: its exit status says nothing.
  await vmSsh(vm, ['sudo', '-n', 'systemctl', 'reboot'], { timeoutMs: 20_000 })
  const bootId = await waitForSsh(vm, started + (opts.timeoutMs ?? (vm.accel === 'kvm' ? 180_000 : 900_000)), { notBootId: previousBootId })
  const downtimeMs = Date.now() - started
  progress(`VM: back on boot ${bootId.slice(0, 8)} after ${(downtimeMs / 1000).toFixed(1)} s`)
  return { name: vm.name, downtimeMs, previousBootId, bootId }
}
