import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { xdgDir } from '../paths.js'
import type { NetState, NodeName } from './netns.js'

/** The lab's names inside the sandbox; the shape mirrors the seed lab (trivy-0, private alias, public name). */
export const SANDBOX_NAMES = {
  domain: 'sandbox.lab.test',
  fqdn: 'trivy-0.sandbox.lab.test',
  alias: 'trivy.sandbox.lab.test',
  publicName: 'trivy.apps.sandbox.lab.test',
  certNames: ['*.apps.sandbox.lab.test'],
} as const

export const TRIVY_VERSION = '0.74.0'
export const TEST_IMAGE = 'lab/vulnerable:1'

/** The repository's root: the nearest directory above this module holding labctl's package.json (works from src/ and dist/). */
export function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (;;) {
    const pkg = join(dir, 'package.json')
    if (existsSync(pkg) && /"name":\s*"labctl"/.test(readFileSync(pkg, 'utf8'))) return dir
    const up = dirname(dir)
    if (up === dir) throw new Error('cannot find the labctl project root')
    dir = up
  }
}

export type ComponentName = 'registry' | 'dns' | 'host' | 'trivy' | 'haproxy'
/** In start order: the edge last, so it never fronts half a lab. */
export const COMPONENTS: ComponentName[] = ['registry', 'dns', 'host', 'trivy', 'haproxy']
/**
 * Every process the sandbox runs: the components plus the package source ("pkg", the loopback release
 * server of the trivy .deb that `labctl trivy install` downloads from). The package source is reported
 * apart from the components (SandboxStatus.packageServer).
 */
export type ServiceName = ComponentName | 'pkg' | 'jenkins'

export type SandboxState = {
  version: 1
  dir: string
  startedAt: string
  ports: Record<ComponentName, number> & Partial<Record<'pkg' | 'jenkins', number>>
  pids: Partial<Record<ServiceName, number>>
  /** Started with `--bare`: the scanner host has no trivy until `labctl trivy install` puts it there. */
  bare?: boolean
  /** DNS records dnsmasq serves (name → address, or CNAME target). Drills remove or change them. */
  dnsRecords: Array<{ name: string; address?: string; cname?: string }>
  trivyVersion: string
  image: string
  inventoryPath: string
  /** Faults injected by `labctl sandbox break`, cleared by `heal`. */
  faults?: string[]
  /** PID of the stand-in that replaces Trivy during the "hung" fault. */
  hungPid?: number
  /** Nodes whose link the link-down fault took down (their port on the lab's switch). */
  linkDown?: NodeName[]
  /** PID of the ssh-cut fault's timer (it loads the SSH drop rule into trivy-0's namespace when it fires). */
  sshCutPid?: number
  /** Started with `--net`: every machine is a network namespace on the lab's own /24 (see netns.ts). */
  net?: NetState
  /** Scanner hosts besides trivy-0 that the edge fronts too (the sandbox VM trivy-vm, `sandbox vm up`). */
  edgeServers?: Array<{ name: string; address: string; port: number }>
  /** The registry serves HTTPS with a certificate of the sandbox CA (the lab network, once its content is pushed). */
  registryTls?: boolean
  /** Started with `--cache redis`: the shared scan cache, a real redis-server on the `redis` node (src/sandbox/redis.ts). */
  redis?: { pid?: number; address: string; port: number }
  /** sshd on the edge machine, for the inventory's edge: section (HAProxy's runtime API over SSH, src/sandbox/edge-ssh.ts). */
  edgeSsh?: { pid?: number; port: number }
}

export function sandboxDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.LABCTL_SANDBOX_DIR || join(xdgDir('state', env), 'sandbox')
}

export function sandboxPaths(dir: string) {
  return {
    dir,
    state: join(dir, 'state.json'),
    logs: join(dir, 'logs'),
    tls: join(dir, 'tls'),
    caCert: join(dir, 'tls', 'ca.pem'),
    caKey: join(dir, 'tls', 'ca-key.pem'),
    publicPem: join(dir, 'tls', 'public.pem'),
    registryCert: join(dir, 'tls', 'registry.pem'),
    registryKey: join(dir, 'tls', 'registry-key.pem'),
    haproxyCfg: join(dir, 'haproxy.cfg'),
    registryCfg: join(dir, 'registry.yml'),
    registryData: join(dir, 'registry-data'),
    image: join(dir, 'image-oci'),
    secrets: join(dir, 'secrets', 'trivy-vm'),
    token: join(dir, 'secrets', 'trivy-vm', 'token'),
    /** The Jenkins stand-in's API token for labctl (jenkins.apiTokenFile), and its seed (users, credentials). */
    jenkinsToken: join(dir, 'secrets', 'jenkins-api-token'),
    jenkinsSeed: join(dir, 'secrets', 'jenkins-seed.json'),
    /** The agent node's secret for the Jenkins agent channel (0600), and its build's settings (no secret in them). */
    jenkinsAgentSecret: join(dir, 'secrets', 'jenkins-agent-secret'),
    agentBuild: join(dir, 'agent-build.json'),
  }
}
export type SandboxPaths = ReturnType<typeof sandboxPaths>

export function readState(dir: string): SandboxState | undefined {
  const p = sandboxPaths(dir).state
  if (!existsSync(p)) return undefined
  try {
    return JSON.parse(readFileSync(p, 'utf8')) as SandboxState
  } catch {
    return undefined
  }
}

export function writeState(state: SandboxState): void {
  const p = sandboxPaths(state.dir).state
  mkdirSync(dirname(p), { recursive: true, mode: 0o700 })
  writeFileSync(`${p}.tmp`, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 })
  renameSync(`${p}.tmp`, p)
}
