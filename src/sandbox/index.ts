import { randomBytes } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { execa } from 'execa'
import { Agent, request } from 'undici'
import { stringify } from 'yaml'
import { LabctlError, errorMessage, oneLine } from '../errors.js'
import { labsDir } from '../paths.js'
import { writePrivateFile } from '../private-file.js'
import { httpRequest, labAgent } from '../net/http.js'
import { haproxyFrontendRules, renderHaproxy } from '../trivy/install-render.js'
import type { CertOptions } from './tls.js'
import { findTools, type Tools } from './prereqs.js'
import { freePorts, isAlive, portOpen, spawnDaemon, stopProcess, waitFor } from './proc.js'
import { ensureKeys, provisionHost, seedHostForInstall, SERVICE, startHost, stopHost, systemctl, trivyPid, writeKnownHosts } from './host.js'
import { ensureTrivyDeb, packageRoot, PKG_SERVER, sandboxPackageUrl } from './pkgsource.js'
import { NODES, netDown, netUp, requireNetCapable, type NodeName } from './netns.js'
import { COMPONENT_NODE, componentAddr, endpoint, NET_PORTS, nodeAddr, onNode, reachable } from './nodes.js'
import {
  COMPONENTS,
  SANDBOX_NAMES,
  TEST_IMAGE,
  TRIVY_VERSION,
  projectRoot,
  readState,
  sandboxDir,
  sandboxPaths,
  writeState,
  type ComponentName,
  type ServiceName,
  type SandboxPaths,
  type SandboxState,
} from './layout.js'

import { DB_MIRROR_REPO, JENKINS_CREDENTIAL, JENKINS_USER, sandboxInventory, sandboxInventoryParsed } from './inventory.js'
export { DB_MIRROR_REPO, JENKINS_CREDENTIAL, JENKINS_USER, firewallAllowlist, sandboxInventory } from './inventory.js'

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
}
export type SandboxUpResult = SandboxStatus & { changed: boolean; durationMs: number }
export type SandboxDownResult = { dir: string; stopped: Array<ComponentName | 'jenkins' | 'network'>; leftover: string[] }

type Progress = (message: string) => void

async function httpOk(url: string, expect?: string): Promise<boolean> {
  const res = await request(url, { headersTimeout: 1000, bodyTimeout: 1000 })
  const body = await res.body.text()
  return res.statusCode === 200 && (expect === undefined || body.trim() === expect)
}

async function healthy(name: ServiceName, state: SandboxState): Promise<boolean> {
  if (!reachable(state)) return false
  const port = state.ports[name]
  const at = endpoint(state, name)
  switch (name) {
    case 'pkg':
      return port ? httpOk(`http://${at}/v${state.trivyVersion}/trivy_${state.trivyVersion}_checksums.txt`).catch(() => false) : false
    case 'trivy':
      return httpOk(`http://${at}/healthz`, 'ok').catch(() => false)
    case 'registry':
      if (state.registryTls) {
        const agent = new Agent({ connect: { ca: readFileSync(sandboxPaths(state.dir).caCert, 'utf8'), timeout: 1000 } })
        try {
          const res = await request(`https://${at}/v2/`, { dispatcher: agent, headersTimeout: 1000, bodyTimeout: 1000 })
          await res.body.text()
          return res.statusCode === 200
        } catch {
          return false
        } finally {
          await agent.close()
        }
      }
      return httpOk(`http://${at}/v2/`).catch(() => false)
    default:
      return port ? portOpen(port, componentAddr(state, name)) : false
  }
}

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
    up: required.every((c) => c.healthy) && (packageServer?.healthy ?? true) && (jenkins?.healthy ?? true),
    dir,
    ...(state.bare ? { bare: true } : {}),
    inventory: state.inventoryPath,
    components,
    ...(packageServer ? { packageServer } : {}),
    ...(jenkins ? { jenkins } : {}),
    registry: endpoint(state, 'registry'),
    image: `${endpoint(state, 'registry')}/${state.image}`,
    ...(state.net ? { network: networkStatus(state) } : {}),
  }
}

function networkStatus(state: SandboxState): NonNullable<SandboxStatus['network']> {
  const net = state.net!
  const parts = (node: NodeName): ServiceName[] => (Object.keys(COMPONENT_NODE) as ServiceName[]).filter((c) => COMPONENT_NODE[c] === node)
  return {
    subnet: net.subnet,
    workstation: net.workstation,
    link: net.link,
    nodes: NODES.map((n) => ({ name: n, address: net.nodes[n].address, namespace: net.nodes[n].ns, parts: parts(n) })),
  }
}

function logTail(p: SandboxPaths, name: string): string {
  const file = join(p.logs, `${name}.log`)
  try {
    const lines = readFileSync(file, 'utf8').trim().split('\n')
    return oneLine(lines.slice(-3).join(' | '), 400)
  } catch {
    return 'no log'
  }
}


export function dnsmasqArgs(state: SandboxState, p: SandboxPaths): string[] {
  const args = [
    '--keep-in-foreground',
    '--conf-file=/dev/null',
    '--no-resolv',
    '--no-hosts',
    '--no-poll',
    '--bind-interfaces',
    `--listen-address=${componentAddr(state, 'dns')}`,
    `--port=${state.ports.dns}`,
    `--local=/${SANDBOX_NAMES.domain}/`,
    '--user=root',
    '--pid-file=',
    `--log-facility=${join(p.logs, 'dnsmasq-queries.log')}`,
  ]
  for (const r of state.dnsRecords) {
    if (r.cname) args.push(`--cname=${r.name},${r.cname}`)
    else if (r.address) args.push(`--host-record=${r.name},${r.address}`)
  }
  return args
}

/**
 * The edge VM's own HAProxy config: global, defaults and the TLS frontend for the public name, with the
 * frontend rules of `labctl trivy install --haproxy` pasted in (as its output says to); the backend comes
 * from that same renderer, loaded next to it as is (haproxyEdgePart).
 */
export function haproxyConfig(state: SandboxState, p: SandboxPaths): string {
  const inv = sandboxInventoryParsed(state, p)
  return `# generated by labctl sandbox: TLS edge for ${SANDBOX_NAMES.publicName}, as the lab's HAProxy edge VM
# (the backend is in ${edgePartFile(p)}, rendered by \`labctl trivy install --haproxy\`)
global
  maxconn 256
  pidfile ${join(p.dir, 'haproxy.pid')}

defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 120s
  timeout http-request 10s

frontend fe_https
  bind ${endpoint(state, 'haproxy')} ssl crt ${p.publicPem}
${haproxyFrontendRules(inv).map((l) => `  ${l}`).join('\n')}
  default_backend be_no_site

backend be_no_site
  http-request return status 404 content-type text/plain string "no such site"
`
}

const edgePartFile = (p: SandboxPaths): string => join(p.dir, 'trivy-edge.cfg')

/** The Trivy part of the edge, exactly as `labctl trivy install --haproxy FILE` renders it for the sandbox inventory. */
export function haproxyEdgePart(state: SandboxState, p: SandboxPaths): string {
  const inv = sandboxInventoryParsed(state, p)
  // Its metrics frontend on the edge machine (loopback sandbox: a socket in the state dir, no port to pick).
  const metricsBind = state.net ? `${componentAddr(state, 'haproxy')}:8405` : join(p.dir, 'edge-metrics.sock')
  // Machines that joined the lab after up (the QEMU VM) are more servers of the same backend.
  const base = inv.trivy.hosts[0]!
  const joined = (state.edgeServers ?? []).map((e) => ({ ...base, name: e.name, fqdn: e.name, aliases: [], address: e.address, listen: `0.0.0.0:${e.port}` }))
  return renderHaproxy(inv, [...inv.trivy.hosts.filter((h) => !joined.some((j) => j.name === h.name)), ...joined], { metricsBind })
}

async function startComponent(name: ServiceName, state: SandboxState, p: SandboxPaths, tools: Tools, opts: { pkgMode?: 'die-midway' } = {}): Promise<number> {
  const log = join(p.logs, `${name}.log`)
  switch (name) {
    case 'jenkins':
      // The stand-in reads its seed (its API user and the credential holding the sandbox token) from a 0600 file.
      return spawnDaemon(
        ...onNode(state, 'jenkins', process.execPath, [join(projectRoot(), 'test', 'standins', 'jenkins-node.mjs'), componentAddr(state, 'jenkins'), String(state.ports.jenkins), p.jenkinsSeed, String(JENKINS_AGENT_PORT)]),
        {
        log,
        cwd: projectRoot(),
      })
    case 'pkg':
      return spawnDaemon(...onNode(state, 'registry', process.execPath, ['-e', PKG_SERVER, packageRoot(), String(state.ports.pkg), opts.pkgMode ?? 'normal', componentAddr(state, 'pkg')]), { log })
    case 'registry':
      writeFileSync(
        p.registryCfg,
        stringify({
          version: 0.1,
          log: { level: 'warn' },
          storage: { filesystem: { rootdirectory: p.registryData }, delete: { enabled: true } },
          // On its own machine the registry also answers on that machine's loopback (labfixtures pushes there).
          http: {
            addr: state.net ? `:${state.ports.registry}` : endpoint(state, 'registry'),
            ...(state.registryTls ? { tls: { certificate: p.registryCert, key: p.registryKey } } : {}),
          },
        }),
      )
      return spawnDaemon(...onNode(state, 'registry', tools.registry, ['serve', p.registryCfg]), { log })
    case 'dns':
      return spawnDaemon(...onNode(state, 'dns', tools.dnsmasq, dnsmasqArgs(state, p)), { log })
    case 'host':
      return startHost(state, p)
    case 'trivy':
      // On the host, under the systemd stand-in; the token is in its EnvironmentFile, never argv.
      await systemctl(state, 'start', SERVICE)
      return trivyPid(p) ?? 0
    case 'haproxy':
      writeFileSync(p.haproxyCfg, haproxyConfig(state, p))
      writeFileSync(edgePartFile(p), haproxyEdgePart(state, p))
      await execa(tools.haproxy, ['-c', '-f', p.haproxyCfg, '-f', edgePartFile(p)], { timeout: 10_000 }).catch((err: { stderr?: string }) => {
        const alerts = (err.stderr ?? '').split('\n').filter((l) => l.includes('ALERT')).join(' ')
        throw new LabctlError(`generated HAProxy config ${p.haproxyCfg} is invalid: ${oneLine(alerts)}`, { suggestion: 'this is a labctl bug; report it' })
      })
      return spawnDaemon(...onNode(state, 'edge', tools.haproxy, ['-db', '-f', p.haproxyCfg, '-f', edgePartFile(p)]), { log })
  }
}

/** (Re)starts one component and waits until it answers. Used by `up` and by fault drills. */
export async function restartComponent(name: ServiceName, state: SandboxState, tools = findTools(), opts: { wait?: boolean; pkgMode?: 'die-midway' } = {}): Promise<void> {
  const p = sandboxPaths(state.dir)
  if (name === 'trivy') await systemctl(state, 'stop', SERVICE).catch(() => undefined)
  else if (name === 'host') await stopHost(state, p)
  else await stopProcess(state.pids[name])
  const pid = await startComponent(name, state, p, tools, opts.pkgMode ? { pkgMode: opts.pkgMode } : {})
  state.pids[name] = pid
  writeState(state)
  if (opts.wait === false) return
  let ok = await waitFor(() => healthy(name, state), 20_000)
  // After a Trivy restart HAProxy needs a health-check round to mark the backend up again.
  if (ok && name === 'trivy' && isAlive(state.pids.haproxy)) ok = await waitFor(() => edgeHealthy(state), 10_000)
  if (!ok) {
    throw new LabctlError(`sandbox ${name} did not become healthy on ${endpoint(state, name)}: ${logTail(p, name)}`, {
      suggestion: `see ${join(p.logs, `${name}.log`)}; then \`labctl sandbox down && labctl sandbox up\``,
    })
  }
}

/** What the TLS edge answers for /healthz by the public name within 1 s: its status and body, or undefined (no answer). */
async function edgeAnswer(state: SandboxState): Promise<{ status: number; body: string } | undefined> {
  if (!reachable(state)) return undefined
  const p = sandboxPaths(state.dir)
  const agent = labAgent({ dnsServers: [endpoint(state, 'dns')], dnsTimeoutMs: 1000, caFile: p.caCert, connectTimeoutMs: 1000 })
  try {
    return await httpRequest(`https://${SANDBOX_NAMES.publicName}:${state.ports.haproxy}/healthz`, { dispatcher: agent, timeoutMs: 1000 })
  } catch {
    return undefined
  } finally {
    await agent.close()
  }
}

/** HAProxy's view of the backend: /healthz through the TLS edge, by the public name, answers ok. */
export async function edgeHealthy(state: SandboxState): Promise<boolean> {
  const a = await edgeAnswer(state)
  return a?.status === 200 && a.body.trim() === 'ok'
}

export async function stopComponent(name: ServiceName, state: SandboxState): Promise<void> {
  if (name === 'trivy') await systemctl(state, 'stop', SERVICE).catch(() => undefined)
  else if (name === 'host') await stopHost(state, sandboxPaths(state.dir))
  else await stopProcess(state.pids[name])
  delete state.pids[name]
  writeState(state)
  // The edge's health checks (install's backend: fall 3 at 2 s) mark the server down within ~6 s; until then
  // HAProxy still retries the dead server. Stopped means what a client sees: the edge's 503 (bounded wait).
  if (name === 'trivy' && isAlive(state.pids.haproxy)) await waitFor(async () => (await edgeAnswer(state))?.status === 503, 15_000)
}

export async function writeServerCert(p: SandboxPaths, opts: CertOptions): Promise<void> {
  const ca = { certPem: readFileSync(p.caCert, 'utf8'), keyPem: readFileSync(p.caKey, 'utf8') }
  const { issueServerCert } = await import('./tls.js')
  const cert = await issueServerCert(ca, opts)
  writePrivateFile(p.publicPem, `${cert.certPem}${cert.keyPem}`)
}

/** Jenkins' inbound-agent port on the jenkins node: the channel a build's credential binding comes over. */
export const JENKINS_AGENT_PORT = 50000

/**
 * The agent node's build (test/standins/agent-build.mjs): bind the Jenkins credential, then scan the test
 * image with the real trivy client through the edge. Its settings name files and addresses, never a secret.
 * Run it: `labctl sandbox exec agent -- node test/standins/agent-build.mjs STATE_DIR/agent-build.json`.
 */
function writeAgentBuild(state: SandboxState, p: SandboxPaths, tools: Tools): void {
  const build = {
    jenkins: `${componentAddr(state, 'jenkins')}:${JENKINS_AGENT_PORT}`,
    agent: 'agent',
    agentSecretFile: p.jenkinsAgentSecret,
    credential: JENKINS_CREDENTIAL,
    trivy: tools.trivy,
    server: `https://${SANDBOX_NAMES.publicName}:${state.ports.haproxy}`,
    tokenHeader: 'Trivy-Token',
    image: `${endpoint(state, 'registry')}/${state.image}`,
    caFile: p.caCert,
    dns: componentAddr(state, 'dns'),
    cacheDir: join(p.dir, 'agent-cache'),
  }
  writeFileSync(p.agentBuild, `${JSON.stringify(build, null, 2)}\n`)
}

/** Seeds the Jenkins stand-in: labctl's API user (token in a 0600 file) and the credential holding the sandbox token. */
function writeJenkinsSeed(p: SandboxPaths): void {
  if (!existsSync(p.jenkinsToken)) writePrivateFile(p.jenkinsToken, `${randomBytes(24).toString('hex')}\n`)
  if (!existsSync(p.jenkinsAgentSecret)) writePrivateFile(p.jenkinsAgentSecret, `${randomBytes(24).toString('hex')}\n`)
  const seed = {
    users: [{ name: JENKINS_USER, apiToken: readFileSync(p.jenkinsToken, 'utf8').trim() }],
    agents: [{ name: 'agent', secret: readFileSync(p.jenkinsAgentSecret, 'utf8').trim() }],
    credentials: [{ store: 'system', id: JENKINS_CREDENTIAL, secret: readFileSync(p.token, 'utf8').trim(), description: 'Trivy server token (labctl sandbox)' }],
  }
  writePrivateFile(p.jenkinsSeed, `${JSON.stringify(seed)}\n`)
}

/** The lab's DNS records: the scanner host, its alias and the public name (the edge). */
export function labRecords(state: Pick<SandboxState, 'net'>): SandboxState['dnsRecords'] {
  const records: SandboxState['dnsRecords'] = [
    { name: SANDBOX_NAMES.fqdn, address: nodeAddr(state, 'trivy-0') },
    { name: SANDBOX_NAMES.alias, cname: SANDBOX_NAMES.fqdn },
    { name: SANDBOX_NAMES.publicName, address: nodeAddr(state, 'edge') },
  ]
  // In the lab network every machine has a name too.
  if (state.net) for (const n of NODES.filter((x) => x !== 'trivy-0')) records.push({ name: `${n}.${SANDBOX_NAMES.domain}`, address: nodeAddr(state, n) })
  return records
}

/** The registry's content: the offline DB mirror and the test image; in the lab network it then speaks HTTPS. */
async function publishRegistry(state: SandboxState, p: SandboxPaths, tools: Tools, progress: Progress): Promise<void> {
  progress('registry: publishing the DB as an OCI artifact (the offline DB mirror)')
  const mirrorDb = join(p.dir, 'db-mirror')
  const fixturesDir = join(projectRoot(), 'test', 'fixtures', 'db')
  const fixtures = readdirSync(fixturesDir).filter((f) => f.endsWith('.yaml')).map((f) => join(fixturesDir, f))
  await execa(tools.labfixtures, ['db', '--out', mirrorDb, '--fixtures', fixtures.join(',')], { timeout: 60_000 })
  // labfixtures pushes to loopback only: in the lab network it runs on the registry's machine.
  await execa(...onNode(state, 'registry', tools.labfixtures, ['dbpush', '--db', mirrorDb, '--to', `127.0.0.1:${state.ports.registry}/${DB_MIRROR_REPO}`]), { timeout: 60_000 })
  progress(`registry: pushing ${TEST_IMAGE} with skopeo`)
  await execa(tools.skopeo, ['copy', '--quiet', '--dest-tls-verify=false', `oci:${p.image}:1`, `docker://${endpoint(state, 'registry')}/${TEST_IMAGE}`], { timeout: 60_000, env: { HOME: p.dir } })
  if (!state.net) return
  // A registry on another machine speaks HTTPS (clients refuse plain HTTP off loopback): a certificate of
  // the sandbox CA for its name and address, then a restart with TLS. Its content stays as pushed.
  progress(`registry: serving HTTPS on ${endpoint(state, 'registry')} (certificate of the sandbox CA)`)
  const ca = { certPem: readFileSync(p.caCert, 'utf8'), keyPem: readFileSync(p.caKey, 'utf8') }
  const { issueServerCert } = await import('./tls.js')
  const cert = await issueServerCert(ca, { names: [`registry.${SANDBOX_NAMES.domain}`], ips: [nodeAddr(state, 'registry')] })
  writeFileSync(p.registryCert, cert.certPem)
  writePrivateFile(p.registryKey, cert.keyPem)
  state.registryTls = true
  await restartComponent('registry', state, tools)
}

/**
 * trivy-0 provisioned by labctl itself: `labctl trivy install`'s own service (installHost) over SSH with the
 * sandbox inventory: the pinned .deb from the lab package source, the user, cache dir, env file, unit,
 * firewall (nftables in trivy-0's namespace; planned only on loopback), the service, then validate's server
 * checks through the edge. So `labctl trivy install --dry-run` right after `sandbox up` has nothing to change.
 */
async function installScanner(state: SandboxState, p: SandboxPaths, progress: Progress): Promise<void> {
  const [{ installHost }, { Remote }] = await Promise.all([import('../trivy/install.js'), import('../ssh/remote.js')])
  const inventory = sandboxInventoryParsed(state, p)
  const loaded = { inventory, path: state.inventoryPath, dir: dirname(state.inventoryPath) }
  const host = inventory.trivy.hosts[0]!
  progress(`trivy-0: \`labctl trivy install\` over SSH (package from ${inventory.trivy.packageUrl ?? 'the package source'}, user, cache dir, env file, unit, firewall, service)`)
  // The sandbox's own known_hosts and key; the operator's ~/.ssh/config has no say in the sandbox.
  const remote = new Remote({ sshConfigFile: null })
  try {
    const r = await installHost({ loaded, host, remote, upgrade: false, dryRun: false, waitMs: 60_000, timeoutMs: 120_000, progress: (m) => progress(`install ${m}`) })
    const bad = r.validate?.checks.filter((c) => c.status === 'fail') ?? []
    if (!r.ok) {
      throw new LabctlError(`sandbox up: \`labctl trivy install\` on trivy-0 did not end with a passing validate: ${oneLine(bad.map((c) => `${c.name}: ${c.detail}`).join('; ') || 'not ok', 400)}`, {
        code: 'SANDBOX_INSTALL',
        suggestion: `see ${join(p.logs, 'host.log')} and \`labctl sandbox exec trivy-0 -- journalctl -u ${SERVICE}\`; then \`labctl sandbox down && labctl sandbox up\``,
      })
    }
    progress(`trivy-0: installed (${r.applied.map((a) => a.id).join(', ')}); validate's server checks pass`)
  } finally {
    await remote.close()
  }
}

/**
 * Whether `sandbox up` makes the lab network: the default. `net: false` (`--loopback`, or
 * LABCTL_SANDBOX_NET=0) runs every part on 127.0.0.1 instead, for machines where root is not at hand.
 */
export function wantsNet(net: boolean | undefined, env: NodeJS.ProcessEnv = process.env): boolean {
  return net ?? env.LABCTL_SANDBOX_NET !== '0'
}

export async function sandboxUp(opts: { dir?: string; progress?: Progress; bare?: boolean; net?: boolean } = {}): Promise<SandboxUpResult> {
  const started = Date.now()
  const dir = opts.dir ?? sandboxDir()
  const progress = opts.progress ?? (() => {})
  const bare = opts.bare === true
  const net = wantsNet(opts.net)
  // Before anything else: without the right to make namespaces, nothing is made.
  if (net) requireNetCapable()
  const tools = findTools()
  const before = await sandboxStatus(dir)
  if (before.up && Boolean(before.network) !== net) {
    throw new LabctlError(`the sandbox is already up ${before.network ? 'as a lab network' : 'on 127.0.0.1 (--loopback)'}; it cannot switch to ${net ? 'a lab network' : '127.0.0.1'} while up`, {
      code: 'SANDBOX_MODE',
      suggestion: `run \`labctl sandbox down\` first, then \`labctl sandbox up${net ? '' : ' --loopback'}\``,
    })
  }
  if (before.up && Boolean(before.bare) !== bare) {
    throw new LabctlError(`the sandbox is already up ${before.bare ? 'with a bare scanner host' : 'with Trivy installed'}; it cannot switch to ${bare ? '--bare' : 'a full sandbox'} while up`, {
      code: 'SANDBOX_MODE',
      suggestion: `run \`labctl sandbox down\` first, then \`labctl sandbox up${bare ? ' --bare' : ''}\``,
    })
  }
  if (before.up) return { ...before, changed: false, durationMs: Date.now() - started }
  if (readState(dir)) {
    progress('sandbox is partly up: stopping what is left before starting again')
    await sandboxDown({ dir })
  }

  const p = sandboxPaths(dir)
  for (const d of [p.dir, p.logs, p.tls, p.registryData, p.secrets]) mkdirSync(d, { recursive: true, mode: 0o700 })
  chmodSync(p.secrets, 0o700)
  const [registry, dns, host, trivy, haproxy, pkg] = net ? [] : ((await freePorts(6)) as [number, number, number, number, number, number])
  const state: SandboxState = {
    version: 1,
    dir,
    startedAt: new Date().toISOString(),
    ports: net ? { ...NET_PORTS } : { registry: registry!, dns: dns!, host: host!, trivy: trivy!, haproxy: haproxy!, pkg: pkg! },
    ...(bare ? { bare: true } : {}),
    pids: {},
    dnsRecords: [],
    trivyVersion: TRIVY_VERSION,
    image: TEST_IMAGE,
    inventoryPath: join(labsDir(), 'sandbox.yaml'),
  }
  writeState(state)

  try {
    if (net) {
      const t = Date.now()
      progress('lab network: a /24 from 198.18.0.0/15, a bridge, one network namespace per machine')
      // Recorded before anything else runs in it, so `down` finds it whatever fails next.
      state.net = await netUp()
      progress(`lab network: ${state.net.subnet} up in ${Date.now() - t} ms (workstation ${state.net.workstation} on ${state.net.link})`)
    }
    state.dnsRecords = labRecords(state)
    writeState(state)
    progress('token and TLS: generating a token, a CA and the public certificate')
    if (!existsSync(p.token)) writePrivateFile(p.token, `${randomBytes(32).toString('base64url')}\n`)
    const { createCa } = await import('./tls.js')
    const ca = await createCa()
    writeFileSync(p.caCert, ca.certPem)
    writePrivateFile(p.caKey, ca.keyPem)
    await writeServerCert(p, { names: [...SANDBOX_NAMES.certNames] })

    await ensureKeys(p)
    writeKnownHosts(state, p)
    if (!existsSync(join(p.image, 'index.json'))) {
      progress('test image: building the OCI layout')
      await execa(tools.labfixtures, ['image', '--out', p.image, '--tag', '1'], { timeout: 60_000 })
    }

    progress(`package source: the trivy ${TRIVY_VERSION} .deb (built once, cached in ${packageRoot()})`)
    await ensureTrivyDeb(tools.trivy, TRIVY_VERSION)
    // Bare machines first: the registry (with the package source), the lab DNS, trivy-0's sshd.
    for (const name of ['registry', 'dns', 'host'] as const) {
      progress(`${name === 'host' ? 'trivy-0 sshd' : name}: starting on ${endpoint(state, name)}`)
      await restartComponent(name, state, tools)
      if (name === 'registry') {
        progress(`package source: serving it on ${endpoint(state, 'pkg')}`)
        await restartComponent('pkg', state, tools)
        await publishRegistry(state, p, tools, progress)
      }
    }
    progress('trivy-0: a bare machine (users, sudo, systemd stand-in; no trivy, no unit, no DB)')
    await provisionHost(state, p)
    if (!bare) {
      progress('trivy-0: the sandbox\'s own settings, which install keeps: the fixture DB in /var/lib/trivy/db and TRIVY_SKIP_DB_UPDATE=true')
      await seedHostForInstall(state, tools)
    }
    // The edge from labctl's own HAProxy renderer; it answers 503 until the scanner is installed.
    progress(`haproxy: starting on ${endpoint(state, 'haproxy')} (the backend from \`labctl trivy install --haproxy\`)`)
    await restartComponent('haproxy', state, tools)
    if (state.ports.jenkins) {
      progress(`jenkins: the credentials-plugin stand-in on ${endpoint(state, 'jenkins')}, seeded with the sandbox token`)
      writeJenkinsSeed(p)
      await restartComponent('jenkins', state, tools)
      writeAgentBuild(state, p, tools)
    }
    mkdirSync(labsDir(), { recursive: true })
    writeFileSync(state.inventoryPath, `# generated by \`labctl sandbox up\`; removed by \`labctl sandbox down\`\n${stringify(sandboxInventory(state, p))}`)
    if (!bare) await installScanner(state, p, progress)
  } catch (err) {
    // Stop what started but keep the logs for the operator; the next `up` or `down` cleans up.
    for (const name of [...COMPONENTS, 'pkg', 'jenkins'] as ServiceName[]) await stopComponent(name, state).catch(() => {})
    if (err instanceof LabctlError) throw err
    const e = err as { shortMessage?: string; stderr?: string }
    throw new LabctlError(`sandbox up failed: ${oneLine(e.shortMessage ?? errorMessage(err))}${e.stderr ? `: ${oneLine(e.stderr)}` : ''}`, {
      suggestion: 'run `./scripts/setup.sh` to make sure every prerequisite is installed, then `labctl sandbox up` again',
    })
  }
  const status = await sandboxStatus(dir)
  return { ...status, changed: true, durationMs: Date.now() - started }
}

export async function sandboxDown(opts: { dir?: string } = {}): Promise<SandboxDownResult> {
  const dir = opts.dir ?? sandboxDir()
  const state = readState(dir)
  const stopped: SandboxDownResult['stopped'] = []
  if (state?.hungPid) {
    try {
      process.kill(state.hungPid, 'SIGCONT')
    } catch {
      /* gone */
    }
  }
  if (state?.pids.pkg) await stopProcess(state.pids.pkg)
  if (state?.pids.jenkins && isAlive(state.pids.jenkins)) {
    await stopProcess(state.pids.jenkins)
    stopped.push('jenkins')
  }
  if (state) {
    // Stop the edge first, the data last, so nothing serves half a lab.
    for (const name of [...COMPONENTS].reverse()) {
      const pid = name === 'trivy' ? trivyPid(sandboxPaths(dir)) : state.pids[name]
      if (name === 'host') {
        const wasUp = isAlive(pid)
        await stopHost(state, sandboxPaths(dir))
        if (wasUp) stopped.push(name)
      } else if (name === 'trivy') {
        if (pid) stopped.push(name)
      } else if (pid && isAlive(pid)) {
        await stopProcess(pid)
        stopped.push(name)
      }
    }
  }
  const leftover: string[] = []
  if (state) {
    // Ports are probed only while the lab link exists (never through the machine's default route).
    const probe = reachable(state)
    for (const name of COMPONENTS) {
      const pid = name === 'trivy' ? trivyPid(sandboxPaths(dir)) : state.pids[name]
      if (isAlive(pid)) leftover.push(`${name} pid ${pid}`)
      else if (probe && state.ports[name] && (await portOpen(state.ports[name], componentAddr(state, name)))) leftover.push(`${name} port ${endpoint(state, name)}`)
    }
    if (isAlive(state.pids.jenkins)) leftover.push(`jenkins pid ${state.pids.jenkins}`)
    else if (probe && state.ports.jenkins && (await portOpen(state.ports.jenkins, componentAddr(state, 'jenkins')))) leftover.push(`jenkins port ${endpoint(state, 'jenkins')}`)
    if (isAlive(state.pids.pkg)) leftover.push(`pkg pid ${state.pids.pkg}`)
    else if (probe && state.ports.pkg && (await portOpen(state.ports.pkg, componentAddr(state, 'pkg')))) leftover.push(`pkg port ${endpoint(state, 'pkg')}`)
    if (existsSync(state.inventoryPath)) rmSync(state.inventoryPath, { force: true })
  }
  if (state?.net) {
    const net = await netDown(state.net.id)
    leftover.push(...net.leftover)
    if (net.removed.length) stopped.push('network')
  }
  if (leftover.length === 0) rmSync(dir, { recursive: true, force: true })
  return { dir, stopped, leftover }
}
