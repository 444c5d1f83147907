// The one place the VM depends on the lab network's layout (src/sandbox/netns.ts, `sandbox up --net`):
// the bridge lives in the lab's switch namespace, so the VM's tap is made there and QEMU runs there;
// the VM gets one more address on the lab's /24, and learns the lab's DNS and package source addresses.
import { LabctlError } from '../../errors.js'
import type { SandboxState } from '../layout.js'
import { NAME_PREFIX } from '../netns.js'

/** The VM's last octet on the lab /24 (the lab's own machines use .1–.30). */
export const VM_OCTET = 40
export const VM_NAME = 'trivy-vm'

export type VmLink = {
  /** Namespace holding the bridge; QEMU runs in it, so the tap it opens is on the bridge's side. */
  switchNs: string
  bridge: string
  /** The tap's name: the lab's prefix, so the lab's own leftover check finds it too. */
  tap: string
  address: string
  prefixLength: number
  subnet: string
  /** The workstation's address on the lab (labctl's SSH comes from it). */
  workstation: string
  dns: string
  /** The machine serving the package source. */
  pkgHost: string
  /** A stable MAC for the lab: 52:54:00 (QEMU's prefix) + the lab id. */
  mac: string
}

export function vmLink(state: Pick<SandboxState, 'net'>): VmLink {
  const net = state.net
  if (!net) {
    throw new LabctlError(`the VM ${VM_NAME} joins the lab network, and the sandbox is not up as one`, {
      code: 'VM_NO_LAB_NET',
      suggestion: 'run `labctl sandbox down` then `labctl sandbox up --net` (as root), then `labctl sandbox vm up`',
    })
  }
  const m = /^(\d+\.\d+\.\d+)\.0\/24$/.exec(net.subnet)
  if (!m) throw new LabctlError(`the lab network's subnet ${net.subnet} is not a /24`, { code: 'VM_NO_LAB_NET' })
  const idHex = net.id.replace(/[^0-9a-f]/gi, '').padStart(6, '0').slice(-6).toLowerCase()
  return {
    switchNs: net.switchNs,
    bridge: net.bridge,
    tap: `${NAME_PREFIX}${net.id}-v`,
    address: `${m[1]}.${VM_OCTET}`,
    prefixLength: 24,
    subnet: net.subnet,
    workstation: net.workstation,
    dns: net.nodes.dns.address,
    pkgHost: net.nodes.registry.address,
    mac: `52:54:00:${idHex.slice(0, 2)}:${idHex.slice(2, 4)}:${idHex.slice(4, 6)}`,
  }
}
