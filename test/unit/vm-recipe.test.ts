// The sandbox VM's pure parts: the mirror read from apt's configuration, the recipe hash, the kernel
// pick, the lab link, the NoCloud seed, QEMU's argv and the inventory edit. No VM is booted here
// (test/vm/vm.test.ts does that).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { loadInventory } from '../../src/inventory/load.js'
import { aptMirror, pickKernel, recipeHash, VM_RECIPE } from '../../src/sandbox/vm/image.js'
import { addVmHost, removeVmHost } from '../../src/sandbox/vm/inventory.js'
import { vmLink } from '../../src/sandbox/vm/link.js'
import { qemuArgs } from '../../src/sandbox/vm/qemu.js'
import { metaData, networkConfig, userData } from '../../src/sandbox/vm/seed.js'
import type { NetState } from '../../src/sandbox/netns.js'
import { parseExposure } from '../../src/trivy/remote.js'

const net = {
  id: '1a2b3c',
  subnet: '198.18.7.0/24',
  switchNs: 'lab-1a2b3c-sw',
  bridge: 'lab-1a2b3c-br',
  link: 'lab-1a2b3c-w',
  workstation: '198.18.7.1',
  nodes: { dns: { ns: 'lab-1a2b3c-dns', address: '198.18.7.3', port: 'lab-1a2b3c-d' }, registry: { ns: 'lab-1a2b3c-registry', address: '198.18.7.4', port: 'lab-1a2b3c-r' } },
} as unknown as NetState

describe('VM image recipe', () => {
  it('reads the mirror from deb822 and one-line sources, skipping security and other suites', () => {
    const deb822 = [
      'Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\nComponents: main\n',
      'Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\nComponents: main\n',
      'Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main contrib\n',
    ].join('\n')
    expect(aptMirror([{ name: 'debian.sources', text: deb822 }])).toBe('http://mirror.example/debian')
    expect(aptMirror([{ name: 'sources.list', text: '# deb http://no.example/debian bookworm main\ndeb [arch=amd64] http://one.example/debian bookworm main\n' }])).toBe('http://one.example/debian')
    expect(aptMirror([{ name: 'x.list', text: 'deb http://other.example/ubuntu noble main\n' }])).toBeUndefined()
    expect(aptMirror([{ name: 'x.list', text: 'deb http://o.example/debian bookworm contrib\n' }])).toBeUndefined()
  })

  it('hashes the recipe: any change is a new cache directory', () => {
    expect(recipeHash()).toMatch(/^[0-9a-f]{16}$/)
    expect(recipeHash()).toBe(recipeHash(JSON.parse(JSON.stringify(VM_RECIPE))))
    expect(recipeHash({ ...VM_RECIPE, packages: [...VM_RECIPE.packages, 'vim'] })).not.toBe(recipeHash())
    expect(recipeHash({ ...VM_RECIPE, config: VM_RECIPE.config + 1 })).not.toBe(recipeHash())
    for (const p of ['systemd', 'openssh-server', 'cloud-init', 'sudo', 'nftables', 'ufw', 'linux-image-cloud-amd64', 'initramfs-tools']) expect(VM_RECIPE.packages).toContain(p)
  })

  it('picks the newest kernel that has its initrd', () => {
    expect(pickKernel(['vmlinuz-6.1.0-50-cloud-amd64', 'initrd.img-6.1.0-50-cloud-amd64', 'config-6.1.0-50-cloud-amd64'])).toBe('6.1.0-50-cloud-amd64')
    expect(pickKernel(['vmlinuz-6.1.0-51-cloud-amd64', 'vmlinuz-6.1.0-50-cloud-amd64', 'initrd.img-6.1.0-50-cloud-amd64'])).toBe('6.1.0-50-cloud-amd64')
    expect(pickKernel(['vmlinuz-6.1.0-50-cloud-amd64'])).toBeUndefined()
  })
})

describe('VM on the lab network', () => {
  it('takes .40 of the lab /24, a tap with the lab prefix in the switch namespace, a MAC from the lab id', () => {
    const l = vmLink({ net })
    expect(l).toMatchObject({ switchNs: 'lab-1a2b3c-sw', bridge: 'lab-1a2b3c-br', tap: 'lab-1a2b3c-v', address: '198.18.7.40', dns: '198.18.7.3', pkgHost: '198.18.7.4', mac: '52:54:00:1a:2b:3c' })
    expect(l.tap.length).toBeLessThanOrEqual(15)
  })

  it('refuses a sandbox that is not a lab network, saying what to run', () => {
    expect(() => vmLink({})).toThrow(/not up as one/)
  })

  it('renders a seed: the operator key, the seeded host key, the static address on the MAC', () => {
    const s = {
      hostname: 'trivy-vm',
      instanceId: 'trivy-vm-0001',
      user: 'labops',
      authorizedKey: 'ssh-ed25519 AAAAC3client operator\n',
      hostKey: { privatePem: '-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n', publicLine: 'ssh-ed25519 AAAAC3host trivy-vm' },
      link: vmLink({ net }),
    }
    const ud = userData(s)
    expect(ud.startsWith('#cloud-config\n')).toBe(true)
    const u = parse(ud) as { users: Array<{ name: string; ssh_authorized_keys: string[]; sudo: string }>; ssh_keys: Record<string, string>; ssh_pwauth: boolean; write_files: Array<{ path: string; content: string }> }
    expect(u.users[0]).toMatchObject({ name: 'labops', ssh_authorized_keys: ['ssh-ed25519 AAAAC3client operator'], sudo: 'ALL=(ALL) NOPASSWD:ALL' })
    expect(u.ssh_keys.ed25519_private).toContain('BEGIN OPENSSH PRIVATE KEY')
    expect(u.ssh_keys.ed25519_public).toBe('ssh-ed25519 AAAAC3host trivy-vm')
    expect(u.ssh_pwauth).toBe(false)
    expect(u.write_files[0]).toMatchObject({ path: '/etc/resolv.conf', content: 'nameserver 198.18.7.3\nsearch sandbox.lab.test\n' })
    expect(parse(metaData(s))).toEqual({ 'instance-id': 'trivy-vm-0001', 'local-hostname': 'trivy-vm' })
    expect(parse(networkConfig(s))).toEqual({
      version: 1,
      config: [{ type: 'physical', name: 'eth0', mac_address: '52:54:00:1a:2b:3c', subnets: [{ type: 'static', address: '198.18.7.40/24' }] }],
    })
  })

  it('builds a QEMU argv: kernel + initrd, overlay and seed on virtio, the tap, console to a file, no display', () => {
    const a = qemuArgs({ accel: 'tcg', kernel: '/k', initrd: '/i', disk: '/d.qcow2', seed: '/s.iso', tap: 'lab-1a2b3c-v', mac: '52:54:00:1a:2b:3c', consoleLog: '/log', monitor: '/m.sock', pidFile: '/p' })
    const after = (flag: string): string[] => a.flatMap((x, i) => (x === flag ? [a[i + 1]!] : []))
    expect(after('-accel')).toEqual(['tcg'])
    expect(a).not.toContain('-cpu')
    expect(after('-append')[0]).toMatch(/root=\/dev\/vda .*console=ttyS0/)
    expect(after('-drive')).toEqual(['file=/d.qcow2,if=virtio,format=qcow2', 'file=/s.iso,if=virtio,format=raw,readonly=on'])
    expect(after('-netdev')).toEqual(['tap,id=lab,ifname=lab-1a2b3c-v,script=no,downscript=no'])
    expect(after('-device')).toContain('virtio-net-pci,netdev=lab,mac=52:54:00:1a:2b:3c')
    expect(after('-chardev')).toEqual(['file,id=console,path=/log'])
    expect(a).toContain('-daemonize')
    const k = qemuArgs({ accel: 'kvm', kernel: '/k', initrd: '/i', disk: '/d', seed: '/s', tap: 't', mac: 'm', consoleLog: '/l', monitor: '/m', pidFile: '/p' })
    expect(k.slice(k.indexOf('-accel'), k.indexOf('-accel') + 4)).toEqual(['-accel', 'kvm', '-cpu', 'host'])
  })
})

describe('VM in the sandbox inventory', () => {
  it('adds trivy-vm as a scanner host the inventory loader accepts, replaces it, and removes it again', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'labctl-vm-inv-'))
    try {
      const path = join(dir, 'sandbox.yaml')
      const original = [
        '# generated by `labctl sandbox up`; removed by `labctl sandbox down`',
        'name: sandbox',
        'dns:',
        '  servers:',
        '    - 198.18.7.3:53',
        'trivy:',
        '  version: 0.74.0',
        '  publicUrl: https://trivy.apps.sandbox.lab.test:443',
        '  hosts:',
        '    - name: trivy-0',
        '      fqdn: trivy-0.sandbox.lab.test',
        '      address: 198.18.7.10',
        '',
      ].join('\n')
      writeFileSync(path, original)
      const entry = { name: 'trivy-vm', fqdn: 'trivy-vm.sandbox.lab.test', address: '198.18.7.40', user: 'labops', identityFile: join(dir, 'id'), knownHostsFile: join(dir, 'kh') }
      addVmHost(path, entry)
      addVmHost(path, entry)
      const text = readFileSync(path, 'utf8')
      expect(text.startsWith('# generated by `labctl sandbox up`')).toBe(true)
      const inv = loadInventory({ config: path })
      expect(inv.inventory.trivy.hosts.map((h) => h.name)).toEqual(['trivy-0', 'trivy-vm'])
      expect(inv.inventory.trivy.hosts[1]).toMatchObject({ address: '198.18.7.40', ssh: { user: 'labops', port: 22, knownHostsFile: join(dir, 'kh') }, sudo: true })
      expect(removeVmHost(path)).toBe(true)
      expect(removeVmHost(path)).toBe(false)
      expect(readFileSync(path, 'utf8')).toBe(original)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('trivy status: the unit hardening as systemd-analyze judges it', () => {
  it('reads the overall exposure and its rating, and nothing from other output', () => {
    expect(parseExposure('  NAME  DESCRIPTION  EXPOSURE\n→ Overall exposure level for trivy-server.service: 3.1 OK 🙂\n')).toEqual({ exposure: 3.1, rating: 'OK' })
    expect(parseExposure('→ Overall exposure level for x.service: 9.6 UNSAFE 😨')).toEqual({ exposure: 9.6, rating: 'UNSAFE' })
    expect(parseExposure('Failed to connect to bus: No such file or directory')).toBeUndefined()
    expect(parseExposure('')).toBeUndefined()
  })
})
