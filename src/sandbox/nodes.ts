// Where each sandbox part runs: on 127.0.0.1 in the machine's own namespace (the default sandbox), or
// on its node's address inside its node's network namespace (`sandbox up --net`).
import { netPresent, type NodeName } from './netns.js'
import type { SandboxState, ServiceName } from './layout.js'

/** The machine each part runs on in the lab network. */
export const COMPONENT_NODE: Record<ServiceName, NodeName> = {
  registry: 'registry',
  pkg: 'registry',
  dns: 'dns',
  host: 'trivy-0',
  trivy: 'trivy-0',
  haproxy: 'edge',
  jenkins: 'jenkins',
}

/** In the lab network every part has a machine of its own, so each listens on its usual port. */
export const NET_PORTS = { registry: 5000, pkg: 8080, dns: 53, host: 22, trivy: 4954, haproxy: 443, jenkins: 8080 } as const

/** The address a node answers on: its lab address, or 127.0.0.1 in the loopback sandbox. */
export function nodeAddr(state: Pick<SandboxState, 'net'>, node: NodeName): string {
  return state.net ? state.net.nodes[node].address : '127.0.0.1'
}

export function componentAddr(state: Pick<SandboxState, 'net'>, name: ServiceName): string {
  return nodeAddr(state, COMPONENT_NODE[name])
}

/** `host:port` of a part, as a client on the workstation reaches it. */
export function endpoint(state: Pick<SandboxState, 'net' | 'ports'>, name: ServiceName): string {
  return `${componentAddr(state, name)}:${state.ports[name] ?? 0}`
}

/** Whether the parts' addresses can be probed: always on loopback; in the lab network only while its link exists. */
export function reachable(state: Pick<SandboxState, 'net'>): boolean {
  return !state.net || netPresent(state.net)
}

/** argv prefix that runs a command in a node's network namespace; empty in the loopback sandbox. */
export function nodePrefix(state: Pick<SandboxState, 'net'>, node: NodeName): string[] {
  return state.net ? ['nsenter', `--net=/run/netns/${state.net.nodes[node].ns}`, '--'] : []
}

/** [cmd, args] wrapped to run on the node of a part. */
export function onNode(state: Pick<SandboxState, 'net'>, node: NodeName, cmd: string, args: string[]): [string, string[]] {
  const prefix = nodePrefix(state, node)
  return prefix.length ? [prefix[0]!, [...prefix.slice(1), cmd, ...args]] : [cmd, args]
}
