// Target resolution (no sshd, no sandbox): what the inventory says beats ~/.ssh/config, what it leaves
// out comes from ~/.ssh/config, and ssh's own defaults (root, 22) come last.
import { describe, expect, it } from 'vitest'
import { parseInventory } from '../../src/inventory/load.js'
import { SshConfig, resolveTarget, targetFromHost } from '../../src/ssh/index.js'

const HOME = '/home/op'
const sshConfig = SshConfig.parse(['Host trivy-0', '  User ops', '  Port 2222', '  IdentityFile ~/.ssh/lab_ed25519', ''].join('\n'), HOME)

/** The first host of a one-host inventory whose `ssh:` block is SSH (YAML flow mapping). */
function host(ssh: string) {
  const text = [
    'name: x',
    'dns: {servers: [10.0.0.53]}',
    'trivy:',
    '  version: 0.74.0',
    '  publicUrl: https://t.example',
    `  hosts: [{name: trivy-0, fqdn: trivy-0.example, address: 10.0.0.5${ssh ? `, ssh: ${ssh}` : ''}}]`,
    '',
  ].join('\n')
  return parseInventory(text, 'lab.yaml').trivy.hosts[0]!
}

const resolve = (ssh: string, config = sshConfig) => resolveTarget(host(ssh), { config, home: HOME })

describe('SSH target resolution', () => {
  it('an explicit ssh.user: root / port: 22 in the inventory beats ~/.ssh/config', () => {
    const r = resolve('{user: root, port: 22}')
    expect(r).toMatchObject({ user: 'root', port: 22, host: '10.0.0.5' })
    expect(r.key).toBe('root@10.0.0.5:22')
    // The inventory's own value is carried over, not only a non-default one.
    expect(targetFromHost(host('{user: root, port: 22}'))).toMatchObject({ user: 'root', port: 22 })
  })

  it('any other explicit user/port beats ~/.ssh/config too', () => {
    expect(resolve('{user: labops, port: 2200}')).toMatchObject({ user: 'labops', port: 2200 })
  })

  it('an absent user/port comes from ~/.ssh/config (matched on the short name), identity files too', () => {
    const r = resolve('')
    expect(r).toMatchObject({ user: 'ops', port: 2222 })
    expect(r.identityFiles).toEqual([{ path: `${HOME}/.ssh/lab_ed25519`, explicit: false }])
    expect(r.hostKeyNames).toContain('[trivy-0.example]:2222')
    expect(resolve('{port: 22}')).toMatchObject({ user: 'ops', port: 22 })
    expect(resolve('{user: root}')).toMatchObject({ user: 'root', port: 2222 })
  })

  it('with neither, ssh defaults apply: root and 22', () => {
    const r = resolve('', SshConfig.empty(HOME))
    expect(r).toMatchObject({ user: 'root', port: 22, connectTimeoutMs: 10_000 })
    expect(r.identityFiles.map((f) => f.path)).toEqual([`${HOME}/.ssh/id_ed25519`, `${HOME}/.ssh/id_ecdsa`, `${HOME}/.ssh/id_rsa`])
  })

  it('a jump host from the inventory is resolved as its own target', () => {
    const r = resolve('{jumpHost: "jump@bastion:2201", identityFile: /keys/lab}')
    expect(r.jump).toMatchObject({ user: 'jump', host: 'bastion', port: 2201 })
    expect(r.jump?.identityFiles.at(-1)).toEqual({ path: '/keys/lab', explicit: false })
    expect(r.identityFiles[0]).toEqual({ path: '/keys/lab', explicit: true })
    expect(r.key).toBe('ops@10.0.0.5:2222 via jump@bastion:2201')
  })
})
