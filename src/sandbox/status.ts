// The sandbox's parts as `sandbox status` reports them: running, answering, where.
import { isAlive } from './proc.js'
import { trivyPid } from './host.js'
import { NODES, type NodeName } from './netns.js'
import { COMPONENT_NODE, componentAddr, endpoint, reachable } from './nodes.js'
import {
  COMPONENTS,
  readState,
  sandboxDir,
  sandboxPaths,
  type ComponentName,
  type ServiceName,
  type SandboxState,
} from './layout.js'

import { healthy } from './components.js'

export type ComponentStatus = { name: ServiceName; pid?: number; port: number; running: boolean; healthy: boolean; detail: string; /** the lab node it runs on (--net) */ node?: NodeName; address?: string }
/** A machine of the lab network (`sandbox up --net`): its namespace and address. */
export type NodeStatus = { name: NodeName; address: string; namespace: string; parts: ServiceName[] }
export type SandboxStatus = {
  up: boolean
  dir: string
  /** Started with --bare: the scanner host has no trivy until `labctl trivy install` (trivy is not required for `up`). */
  bare?: boolean
  inventory?: string
  components: ComponentStatus[]
  /** The loopback package source serving the trivy .deb release-style (trivy.packageUrl in the inventory). */
  packageServer?: ComponentStatus
  /** With --net: the Jenkins stand-in (credentials plugin) on the jenkins node, seeded with the sandbox token. */
  jenkins?: ComponentStatus
  registry?: string
  image?: string
  /** With --net: the lab's /24, the workstation's address on it and every node. */
  network?: { subnet: string; workstation: string; link: string; nodes: NodeStatus[] }
  /** With `--cache redis`: the shared scan cache on the redis node. */
  redis?: { address: string; port: number; running: boolean; pid?: number }
}
export type SandboxUpResult = SandboxStatus & { changed: boolean; durationMs: number }
export type SandboxDownResult = { dir: string; stopped: Array<ComponentName | 'jenkins' | 'network' | 'redis' | 'edge-sshd'>; leftover: string[] }




export async function sandboxStatus(dir = sandboxDir()): Promise<SandboxStatus> {
  const state = readState(dir)
  if (!state) return { up: false, dir, components: [] }
  const one = async (name: ServiceName): Promise<ComponentStatus> => {
    const pid = name === 'trivy' ? trivyPid(sandboxPaths(dir)) : state.pids[name]
    const port = state.ports[name] ?? 0
    const running = isAlive(pid)
    const ok = running && (await healthy(name, state))
    const at = endpoint(state, name)
    let detail = !running ? 'not running' : ok ? `listening on ${at}${state.net ? ` (node ${COMPONENT_NODE[name]})` : ''}` : `running but not answering on ${at}`
    if (!reachable(state)) detail = `the lab network ${state.net?.subnet ?? ''} is gone (run \`labctl sandbox down\`)`
    if (name === 'trivy' && state.bare && !running) detail = 'not installed or not running (bare host: `labctl trivy install --lab sandbox`)'
    return { name, ...(pid ? { pid } : {}), port, running, healthy: ok, detail, ...(state.net ? { node: COMPONENT_NODE[name], address: componentAddr(state, name) } : {}) }
  }
  const [components, packageServer, jenkins] = await Promise.all([
    Promise.all(COMPONENTS.map(one)),
    state.ports.pkg ? one('pkg') : Promise.resolve(undefined),
    state.ports.jenkins ? one('jenkins') : Promise.resolve(undefined),
  ])
  // On a bare sandbox the Trivy service is what `labctl trivy install` adds: not needed for "up".
  const required = components.filter((c) => !(state.bare && c.name === 'trivy'))
  return {
    up: required.every((c) => c.healthy) && (packageServer?.healthy ?? true) && (jenkins?.healthy ?? true) && (!state.redis || isAlive(state.redis.pid)),
    dir,
    ...(state.bare ? { bare: true } : {}),
    inventory: state.inventoryPath,
    components,
    ...(packageServer ? { packageServer } : {}),
    ...(jenkins ? { jenkins } : {}),
    registry: endpoint(state, 'registry'),
    image: `${endpoint(state, 'registry')}/${state.image}`,
    ...(state.net ? { network: networkStatus(state) } : {}),
    ...(state.redis ? { redis: { address: state.redis.address, port: state.redis.port, running: isAlive(state.redis.pid), ...(state.redis.pid ? { pid: state.redis.pid } : {}) } } : {}),
  }
}

function networkStatus(state: SandboxState): NonNullable<SandboxStatus['network']> {
  const net = state.net!
  const parts = (node: NodeName): ServiceName[] => (Object.keys(COMPONENT_NODE) as ServiceName[]).filter((c) => COMPONENT_NODE[c] === node)
  return {
    subnet: net.subnet,
    workstation: net.workstation,
    link: net.link,
    // A lab made by an older labctl may lack a node added since.
    nodes: NODES.filter((n) => net.nodes[n]).map((n) => ({ name: n, address: net.nodes[n].address, namespace: net.nodes[n].ns, parts: parts(n) })),
  }
}



