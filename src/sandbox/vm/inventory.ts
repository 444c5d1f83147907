// The sandbox inventory gets the VM as one more scanner host (trivy.hosts[] entry "trivy-vm"), and loses
// it again on `vm down`. The rest of the file — including its header comment — is left as it is.
import { readFileSync, renameSync, writeFileSync } from 'node:fs'
import { parseDocument, isSeq, type Document, type YAMLSeq } from 'yaml'
import { LabctlError } from '../../errors.js'

export type VmHostEntry = { name: string; fqdn: string; address: string; user: string; identityFile: string; knownHostsFile: string }

/** The trivy.hosts[] entry of the VM: SSH to its lab address, host key from the VM's own known_hosts. */
export function vmHostEntry(h: VmHostEntry): Record<string, unknown> {
  return {
    name: h.name,
    fqdn: h.fqdn,
    address: h.address,
    listen: '0.0.0.0:4954',
    debugUrl: `http://${h.address}:4954`,
    ssh: { user: h.user, port: 22, identityFile: h.identityFile, knownHostsFile: h.knownHostsFile, connectTimeoutMs: 10_000 },
    sudo: true,
  }
}

function edit(path: string, change: (hosts: YAMLSeq, doc: Document) => boolean): boolean {
  const doc = parseDocument(readFileSync(path, 'utf8'))
  const hosts = doc.getIn(['trivy', 'hosts'])
  if (!isSeq(hosts)) throw new LabctlError(`${path}: trivy.hosts is not a list`, { code: 'VM_INVENTORY', suggestion: 'run `labctl sandbox down` and `labctl sandbox up --net`' })
  if (!change(hosts, doc)) return false
  writeFileSync(`${path}.tmp`, doc.toString(), { mode: 0o600 })
  renameSync(`${path}.tmp`, path)
  return true
}

function indexOf(hosts: YAMLSeq, name: string): number {
  return hosts.items.findIndex((i) => (i as { get?: (k: string) => unknown }).get?.('name') === name)
}

/** Adds (or replaces) the VM's host entry. */
export function addVmHost(path: string, h: VmHostEntry): void {
  edit(path, (hosts, doc) => {
    const at = indexOf(hosts, h.name)
    if (at >= 0) hosts.items.splice(at, 1)
    hosts.add(doc.createNode(vmHostEntry(h)))
    return true
  })
}

/** Removes the VM's host entry; false when there was none. */
export function removeVmHost(path: string, name = 'trivy-vm'): boolean {
  return edit(path, (hosts) => {
    const at = indexOf(hosts, name)
    if (at < 0) return false
    hosts.items.splice(at, 1)
    return true
  })
}
