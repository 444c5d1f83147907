// The VM's NoCloud seed: user-data (the operator login with the sandbox's SSH public key, the host key
// labctl generated — so known_hosts is written before the first connection, never learned blindly),
// meta-data (a fresh instance id, the hostname) and network-config (its static lab address), as an
// ISO 9660 volume labelled "cidata" made by genisoimage.
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import { stringify } from 'yaml'
import { LabctlError, oneLine } from '../../errors.js'
import { SANDBOX_NAMES } from '../layout.js'
import type { VmLink } from './link.js'

export type SeedInput = {
  hostname: string
  instanceId: string
  user: string
  authorizedKey: string
  hostKey: { privatePem: string; publicLine: string }
  link: VmLink
  /** The sandbox CA (PEM): the lab's registry and edge certificates chain to it, so the VM trusts it like a lab machine. */
  caPem?: string
}

export function userData(s: SeedInput): string {
  const doc = {
    hostname: s.hostname,
    fqdn: `${s.hostname}.${SANDBOX_NAMES.domain}`,
    manage_etc_hosts: true,
    // The image has no locales but C.UTF-8 (cloud-init's default en_US.UTF-8 would fail).
    locale: 'C.UTF-8',
    users: [
      {
        name: s.user,
        gecos: 'labctl sandbox operator',
        shell: '/bin/bash',
        sudo: 'ALL=(ALL) NOPASSWD:ALL',
        lock_passwd: true,
        ssh_authorized_keys: [s.authorizedKey.trim()],
      },
    ],
    disable_root: true,
    ssh_pwauth: false,
    ssh_deletekeys: true,
    // Only the ed25519 key, which the seed provides: nothing is generated (slow under TCG) or offered besides it.
    ssh_genkeytypes: ['ed25519'],
    ssh_keys: { ed25519_private: s.hostKey.privatePem, ed25519_public: s.hostKey.publicLine.trim() },
    ...(s.caPem ? { ca_certs: { trusted: [s.caPem] } } : {}),
    write_files: [{ path: '/etc/resolv.conf', permissions: '0644', content: `nameserver ${s.link.dns}\nsearch ${SANDBOX_NAMES.domain}\n` }],
  }
  return `#cloud-config\n${stringify(doc)}`
}

export function metaData(s: SeedInput): string {
  return stringify({ 'instance-id': s.instanceId, 'local-hostname': s.hostname })
}

/** Version 1 network config: the one NIC (eth0 with net.ifnames=0), matched by its MAC, a static lab address, no gateway. */
export function networkConfig(s: SeedInput): string {
  return stringify({
    version: 1,
    config: [
      {
        type: 'physical',
        name: 'eth0',
        mac_address: s.link.mac,
        subnets: [{ type: 'static', address: `${s.link.address}/${s.link.prefixLength}` }],
      },
    ],
  })
}

/** Writes the three files under DIR/seed/ and the ISO at DIR/seed.iso (0600: it holds the host's private key). */
export async function buildSeed(dir: string, s: SeedInput): Promise<string> {
  const d = join(dir, 'seed')
  mkdirSync(d, { recursive: true, mode: 0o700 })
  writeFileSync(join(d, 'user-data'), userData(s), { mode: 0o600 })
  writeFileSync(join(d, 'meta-data'), metaData(s), { mode: 0o600 })
  writeFileSync(join(d, 'network-config'), networkConfig(s), { mode: 0o600 })
  const iso = join(dir, 'seed.iso')
  const r = await execa('genisoimage', ['-quiet', '-output', iso, '-volid', 'cidata', '-joliet', '-rock', 'user-data', 'meta-data', 'network-config'], {
    cwd: d,
    timeout: 30_000,
    reject: false,
    stdin: 'ignore',
  })
  if (r.exitCode !== 0) {
    throw new LabctlError(`VM seed: genisoimage failed: ${oneLine(String(r.stderr || r.shortMessage), 200)}`, {
      code: 'VM_SEED',
      suggestion: 'run `./scripts/setup.sh` (it installs genisoimage)',
    })
  }
  chmodSync(iso, 0o600)
  return iso
}
