// QEMU for the sandbox VM: whether KVM really runs a guest here (a short probe; /dev/kvm can exist
// while guests hang), the qemu-system-x86_64 command line, starting it daemonized in the lab's switch
// namespace (its tap on the lab bridge) and stopping it.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { execa } from 'execa'
import { LabctlError, oneLine } from '../../errors.js'
import { isAlive } from '../proc.js'

export type Accel = 'kvm' | 'tcg'
export type AccelProbe = { accel: Accel; reason: string; probeMs: number; cached: boolean }

/** Milliseconds a KVM guest gets to print its first kernel line before KVM is judged not to work. */
export const KVM_PROBE_MS = 10_000

/**
 * KVM or TCG. LABCTL_VM_ACCEL=kvm|tcg decides outright; else no /dev/kvm → TCG; else the kernel is
 * booted under KVM with no root file system: a working KVM prints "Linux version" within a second or
 * two (then panics and exits), a hanging one prints nothing. The verdict is cached per machine boot.
 */
export async function chooseAccel(opts: { kernel: string; cacheDir: string; env?: NodeJS.ProcessEnv; probeMs?: number }): Promise<AccelProbe> {
  const env = opts.env ?? process.env
  const forced = env.LABCTL_VM_ACCEL
  if (forced) {
    if (forced !== 'kvm' && forced !== 'tcg') {
      throw new LabctlError(`LABCTL_VM_ACCEL=${oneLine(forced, 20)} is neither kvm nor tcg`, { code: 'VM_USAGE', exitCode: 2, suggestion: 'unset it, or set it to kvm or tcg' })
    }
    return { accel: forced, reason: `LABCTL_VM_ACCEL=${forced}`, probeMs: 0, cached: false }
  }
  if (!existsSync('/dev/kvm')) return { accel: 'tcg', reason: 'no /dev/kvm', probeMs: 0, cached: false }
  const bootId = existsSync('/proc/sys/kernel/random/boot_id') ? readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() : 'unknown'
  const cacheFile = join(opts.cacheDir, 'accel.json')
  try {
    const c = JSON.parse(readFileSync(cacheFile, 'utf8')) as { bootId: string; accel: Accel; reason: string; probeMs: number }
    if (c.bootId === bootId && (c.accel === 'kvm' || c.accel === 'tcg')) return { accel: c.accel, reason: c.reason, probeMs: c.probeMs, cached: true }
  } catch {
    /* no verdict yet */
  }
  const limit = opts.probeMs ?? KVM_PROBE_MS
  const started = Date.now()
  const r = await execa(
    'qemu-system-x86_64',
    ['-accel', 'kvm', '-cpu', 'host', '-m', '256', '-nodefaults', '-no-user-config', '-display', 'none', '-serial', 'stdio', '-kernel', opts.kernel, '-append', 'console=ttyS0 panic=-1', '-no-reboot'],
    { timeout: limit, reject: false, stdin: 'ignore', all: true },
  )
  const probeMs = Date.now() - started
  const out = String(r.all ?? '')
  const ok = /Linux version/.test(out)
  const verdict: AccelProbe = ok
    ? { accel: 'kvm', reason: `a KVM guest printed its kernel banner in ${probeMs} ms`, probeMs, cached: false }
    : {
        accel: 'tcg',
        reason: r.timedOut
          ? `/dev/kvm exists but a KVM guest printed nothing in ${limit / 1000} s (nested virtualisation not working)`
          : `KVM guest failed: ${oneLine(out, 160) || `exit ${r.exitCode}`}`,
        probeMs,
        cached: false,
      }
  mkdirSync(opts.cacheDir, { recursive: true })
  writeFileSync(cacheFile, `${JSON.stringify({ bootId, accel: verdict.accel, reason: verdict.reason, probeMs })}\n`)
  return verdict
}

export type QemuSpec = {
  accel: Accel
  kernel: string
  initrd: string
  disk: string
  seed: string
  tap: string
  mac: string
  consoleLog: string
  monitor: string
  pidFile: string
  memoryMiB?: number
  cpus?: number
}

export function qemuArgs(s: QemuSpec): string[] {
  return [
    '-name', 'trivy-vm',
    '-accel', s.accel,
    ...(s.accel === 'kvm' ? ['-cpu', 'host'] : []),
    '-smp', String(s.cpus ?? 2),
    '-m', String(s.memoryMiB ?? 1536),
    '-nodefaults', '-no-user-config', '-display', 'none',
    '-kernel', s.kernel,
    '-initrd', s.initrd,
    // net.ifnames=0: the one NIC is eth0 whatever its PCI slot (the seed's network-config names it).
    '-append', 'root=/dev/vda rw console=ttyS0 net.ifnames=0',
    '-drive', `file=${s.disk},if=virtio,format=qcow2`,
    '-drive', `file=${s.seed},if=virtio,format=raw,readonly=on`,
    '-netdev', `tap,id=lab,ifname=${s.tap},script=no,downscript=no`,
    '-device', `virtio-net-pci,netdev=lab,mac=${s.mac}`,
    '-device', 'virtio-rng-pci',
    '-chardev', `file,id=console,path=${s.consoleLog}`,
    '-serial', 'chardev:console',
    '-monitor', `unix:${s.monitor},server=on,wait=off`,
    '-pidfile', s.pidFile,
    '-daemonize',
  ]
}

/** Starts QEMU daemonized with the given argv prefix (nsenter into the switch namespace); returns its PID. */
export async function startQemu(prefix: string[], s: QemuSpec): Promise<number> {
  const argv = [...prefix, 'qemu-system-x86_64', ...qemuArgs(s)]
  const r = await execa(argv[0]!, argv.slice(1), { timeout: 60_000, reject: false, stdin: 'ignore' })
  if (r.exitCode !== 0) {
    throw new LabctlError(`VM: qemu-system-x86_64 did not start: ${oneLine(String(r.stderr || r.stdout || r.shortMessage), 300)}`, {
      code: 'VM_QEMU',
      suggestion: 'run `./scripts/setup.sh` (qemu-system-x86, qemu-utils), then `labctl sandbox vm down` and `labctl sandbox vm up`',
    })
  }
  const pid = Number.parseInt(readFileSync(s.pidFile, 'utf8').trim(), 10)
  if (!Number.isInteger(pid) || !isAlive(pid)) throw new LabctlError('VM: QEMU exited right after starting', { code: 'VM_QEMU', suggestion: `see ${s.consoleLog}` })
  return pid
}

/** SIGTERM (QEMU exits at once, like pulling the plug), then SIGKILL after graceMs; waits until it is gone. */
export async function stopQemu(pid: number | undefined, graceMs = 5000): Promise<boolean> {
  if (!pid || !isAlive(pid)) return true
  const kill = (sig: NodeJS.Signals): void => {
    try {
      process.kill(pid, sig)
    } catch {
      /* gone */
    }
  }
  kill('SIGTERM')
  for (let waited = 0; waited < graceMs && isAlive(pid); waited += 100) await sleep(100)
  if (isAlive(pid)) kill('SIGKILL')
  for (let i = 0; i < 30 && isAlive(pid); i++) await sleep(100)
  return !isAlive(pid)
}
