// The VM's disk image: a Debian 12 (bookworm) root file system made by `debootstrap` from the Debian
// mirror apt is configured with on this machine, turned into an ext4 disk image by `mkfs.ext4 -d` (no
// loop devices, no mounts), plus the cloud kernel and its initrd copied out for QEMU's -kernel/-initrd.
// Built once per recipe: cached under $XDG_CACHE_HOME/labctl/vm/<hash of the recipe>/; every `vm up`
// boots a fresh copy-on-write overlay of it, so the image itself is never written by a guest.
import { createHash } from 'node:crypto'
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import { LabctlError, oneLine } from '../../errors.js'
import { xdgDir } from '../../paths.js'

/** What the image is made of. Any change here changes the hash, hence the cache directory. */
export const VM_RECIPE = {
  suite: 'bookworm',
  variant: 'minbase',
  packages: [
    'systemd',
    'systemd-sysv',
    'dbus',
    'udev',
    'kmod',
    'linux-image-cloud-amd64',
    'initramfs-tools',
    'openssh-server',
    'cloud-init',
    // debootstrap's resolver does not follow virtual packages: python3-cryptography needs the
    // python3-cffi-backend-api-* that this one provides.
    'python3-cffi-backend',
    'sudo',
    'nftables',
    'ufw',
    'iproute2',
    'ifupdown',
    'netbase',
    'curl',
    'ca-certificates',
    'procps',
  ],
  diskMiB: 4096,
  /** Bumped whenever configureRootfs() changes what it writes. */
  config: 1,
} as const

export type VmImage = { hash: string; dir: string; disk: string; kernel: string; initrd: string; built: boolean; buildMs?: number; kernelVersion: string }

export function recipeHash(recipe: unknown = VM_RECIPE): string {
  return createHash('sha256').update(JSON.stringify(recipe)).digest('hex').slice(0, 16)
}

export function vmCacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  return join(xdgDir('cache', env), 'vm')
}

/**
 * The Debian mirror apt uses on this machine: the first `deb` source (deb822 `.sources` or one-line
 * `.list`) for the suite with the `main` component that is not the security archive.
 */
export function aptMirror(files: Array<{ name: string; text: string }>, suite: string = VM_RECIPE.suite): string | undefined {
  for (const f of files) {
    if (f.name.endsWith('.sources')) {
      for (const stanza of f.text.split(/\n\s*\n/)) {
        const field = (k: string): string => new RegExp(`^${k}:\\s*(.*)$`, 'mi').exec(stanza)?.[1]?.trim() ?? ''
        if (!field('Types').split(/\s+/).includes('deb') || !field('Suites').split(/\s+/).includes(suite) || !field('Components').split(/\s+/).includes('main')) continue
        const uri = field('URIs').split(/\s+/)[0]
        if (uri && !/security/.test(uri)) return uri
      }
    } else {
      for (const line of f.text.split('\n')) {
        const m = /^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)$/.exec(line)
        if (m && m[2] === suite && m[3]!.split(/\s+/).includes('main') && !/security/.test(m[1]!)) return m[1]
      }
    }
  }
  return undefined
}

function readAptSources(): Array<{ name: string; text: string }> {
  const out: Array<{ name: string; text: string }> = []
  if (existsSync('/etc/apt/sources.list')) out.push({ name: 'sources.list', text: readFileSync('/etc/apt/sources.list', 'utf8') })
  const d = '/etc/apt/sources.list.d'
  if (existsSync(d)) for (const n of readdirSync(d).sort()) if (/\.(list|sources)$/.test(n)) out.push({ name: n, text: readFileSync(join(d, n), 'utf8') })
  return out
}

/** The kernel version whose vmlinuz and initrd are both in boot/. */
export function pickKernel(bootFiles: string[]): string | undefined {
  const versions = bootFiles.filter((f) => f.startsWith('vmlinuz-')).map((f) => f.slice('vmlinuz-'.length))
  return versions.filter((v) => bootFiles.includes(`initrd.img-${v}`)).sort().at(-1)
}

/** Files written into the root file system after debootstrap (no chroot needed). */
export function configureRootfs(root: string): void {
  const w = (rel: string, body: string, mode = 0o644): void => {
    mkdirSync(join(root, rel, '..'), { recursive: true })
    writeFileSync(join(root, rel), body, { mode })
  }
  w('etc/fstab', '/dev/vda / ext4 rw,errors=remount-ro 0 1\n')
  w('etc/hostname', 'localhost\n')
  // debootstrap copied this machine's resolver: the VM's comes from its seed.
  w('etc/resolv.conf', '')
  w('etc/network/interfaces', '# labctl sandbox VM: cloud-init writes interfaces.d/50-cloud-init from the seed\nsource /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n')
  // Only the NoCloud seed (then nothing): no probing for cloud metadata services that are not there.
  w('etc/cloud/cloud.cfg.d/90-labctl.cfg', '# labctl sandbox VM: configured by a NoCloud seed only\ndatasource_list: [ NoCloud, None ]\n')
  // Every boot of a copy is a new machine: a new machine-id, and the host keys come from its seed.
  w('etc/machine-id', '')
  rmSync(join(root, 'var/lib/dbus/machine-id'), { force: true })
  const sshDir = join(root, 'etc/ssh')
  if (existsSync(sshDir)) for (const f of readdirSync(sshDir)) if (f.startsWith('ssh_host_')) rmSync(join(sshDir, f), { force: true })
  // The VM reaches only the lab: apt's timers would wait for a mirror that is not there.
  for (const unit of ['apt-daily.timer', 'apt-daily-upgrade.timer', 'apt-daily.service', 'apt-daily-upgrade.service']) {
    rmSync(join(root, 'etc/systemd/system', unit), { force: true })
    mkdirSync(join(root, 'etc/systemd/system'), { recursive: true })
    symlinkSync('/dev/null', join(root, 'etc/systemd/system', unit))
  }
}

function fail(what: string, err: unknown, log?: string): never {
  const e = err as { shortMessage?: string; stderr?: string; message?: string }
  throw new LabctlError(`VM image: ${what} failed: ${oneLine(String(e.stderr || e.shortMessage || e.message || err), 300)}`, {
    code: 'VM_IMAGE',
    suggestion: log ? `see ${log}; run \`./scripts/setup.sh\` (debootstrap, e2fsprogs) and retry` : 'run `./scripts/setup.sh` (debootstrap, e2fsprogs) and retry',
  })
}

export type ImageProgress = (msg: string) => void

/**
 * The cached image for the recipe, built when missing: debootstrap into a staging directory, the
 * files of configureRootfs, kernel + initrd copied out, `mkfs.ext4 -d` into disk.raw, then the staging
 * directory renamed into place (a half-built image is never used).
 */
export async function ensureVmImage(opts: { progress?: ImageProgress; cacheRoot?: string; mirror?: string; debootstrapTimeoutMs?: number } = {}): Promise<VmImage> {
  const progress = opts.progress ?? (() => {})
  const hash = recipeHash()
  const root = opts.cacheRoot ?? vmCacheRoot()
  const dir = join(root, hash)
  const meta = join(dir, 'image.json')
  if (existsSync(meta)) {
    const m = JSON.parse(readFileSync(meta, 'utf8')) as { kernelVersion: string }
    const img = { hash, dir, disk: join(dir, 'disk.raw'), kernel: join(dir, 'vmlinuz'), initrd: join(dir, 'initrd.img'), built: false, kernelVersion: m.kernelVersion }
    if ([img.disk, img.kernel, img.initrd].every((f) => existsSync(f))) return img
  }
  if (process.getuid?.() !== 0) {
    throw new LabctlError('building the VM image needs root (debootstrap)', { code: 'VM_NEEDS_ROOT', suggestion: 'run `sudo labctl sandbox vm up`, or as root' })
  }
  const mirror = opts.mirror ?? aptMirror(readAptSources())
  if (!mirror) {
    throw new LabctlError(`VM image: no Debian ${VM_RECIPE.suite} mirror with "main" in /etc/apt/sources.list*`, {
      code: 'VM_IMAGE',
      suggestion: `add a ${VM_RECIPE.suite} source to apt's configuration, or pass the mirror explicitly`,
    })
  }
  for (const tool of ['debootstrap', 'mkfs.ext4']) {
    const r = await execa('sh', ['-c', `command -v ${tool} || test -x /usr/sbin/${tool}`], { reject: false, timeout: 5000 })
    if (r.exitCode !== 0) throw new LabctlError(`VM image: ${tool} is not installed`, { code: 'VM_IMAGE', suggestion: 'run `./scripts/setup.sh` (it installs debootstrap, qemu-system-x86, qemu-utils, genisoimage)' })
  }
  const started = Date.now()
  mkdirSync(root, { recursive: true })
  const stage = join(root, `.build-${hash}-${process.pid}`)
  rmSync(stage, { recursive: true, force: true })
  mkdirSync(stage, { recursive: true })
  const rootfs = join(stage, 'rootfs')
  // The build log outlives a failed build (the staging directory does not).
  const log = join(root, `build-${hash}.log`)
  try {
    progress(`VM image: debootstrap ${VM_RECIPE.suite} (${VM_RECIPE.variant}, ${VM_RECIPE.packages.length} packages) from ${mirror}`)
    try {
      // The downloaded .debs are kept (not part of the recipe): a changed recipe rebuilds without downloading again.
      const debs = join(root, 'debs')
      mkdirSync(debs, { recursive: true })
      await execa('debootstrap', [`--variant=${VM_RECIPE.variant}`, `--cache-dir=${debs}`, `--include=${VM_RECIPE.packages.join(',')}`, VM_RECIPE.suite, rootfs, mirror], {
        timeout: opts.debootstrapTimeoutMs ?? 15 * 60_000,
        stdin: 'ignore',
        stdout: { file: log },
        stderr: { file: log },
        env: { DEBIAN_FRONTEND: 'noninteractive', LC_ALL: 'C.UTF-8' },
      })
    } catch (err) {
      const tail = existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').slice(-3).join(' | ') : ''
      fail('debootstrap', tail ? new Error(tail) : err, log)
    }
    progress(`VM image: debootstrap done in ${Math.round((Date.now() - started) / 1000)} s`)
    configureRootfs(rootfs)
    const kernelVersion = pickKernel(readdirSync(join(rootfs, 'boot')))
    if (!kernelVersion) fail('finding the kernel', new Error(`no vmlinuz-* with its initrd.img-* in ${join(rootfs, 'boot')}`), log)
    copyFileSync(join(rootfs, 'boot', `vmlinuz-${kernelVersion}`), join(stage, 'vmlinuz'))
    copyFileSync(join(rootfs, 'boot', `initrd.img-${kernelVersion}`), join(stage, 'initrd.img'))
    progress(`VM image: mkfs.ext4 -d (${VM_RECIPE.diskMiB} MiB, sparse)`)
    try {
      await execa('mkfs.ext4', ['-q', '-F', '-L', 'trivy-vm', '-d', rootfs, join(stage, 'disk.raw'), `${VM_RECIPE.diskMiB}M`], { timeout: 10 * 60_000, stdin: 'ignore' })
    } catch (err) {
      fail('mkfs.ext4 -d', err)
    }
    rmSync(rootfs, { recursive: true, force: true })
    const buildMs = Date.now() - started
    writeFileSync(join(stage, 'image.json'), `${JSON.stringify({ recipe: VM_RECIPE, hash, mirror, kernelVersion, builtAt: new Date().toISOString(), buildMs }, null, 2)}\n`)
    rmSync(dir, { recursive: true, force: true })
    renameSync(stage, dir)
    progress(`VM image: built in ${Math.round(buildMs / 1000)} s → ${dir}`)
    return { hash, dir, disk: join(dir, 'disk.raw'), kernel: join(dir, 'vmlinuz'), initrd: join(dir, 'initrd.img'), built: true, buildMs, kernelVersion }
  } finally {
    rmSync(stage, { recursive: true, force: true })
  }
}
