import { randomBytes } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import { Agent, request } from 'undici'
import { stringify } from 'yaml'
import { LabctlError, errorMessage, oneLine } from '../errors.js'
import { labsDir } from '../paths.js'
import { writePrivateFile } from '../private-file.js'
import { httpRequest, labAgent } from '../net/http.js'
import type { CertOptions } from './tls.js'
import { findTools, type Tools } from './prereqs.js'
import { freePorts, isAlive, portOpen, spawnDaemon, stopProcess, waitFor } from './proc.js'
import { applyHostFirewall, buildHostDb, ensureKeys, hostPaths, HOST_USER, provisionHost, SERVICE, startHost, stopHost, systemctl, trivyPid, writeKnownHosts } from './host.js'
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

/** Where the sandbox's offline DB mirror lives in its registry (trivy-db's own repository name). */
export const DB_MIRROR_REPO = 'aquasec/trivy-db:2'

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

export function haproxyConfig(state: SandboxState, p: SandboxPaths): string {
  return `# generated by labctl sandbox: TLS edge for ${SANDBOX_NAMES.publicName}, as the lab's HAProxy edge VM
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
  acl host_trivy ssl_fc_sni -i ${SANDBOX_NAMES.publicName}
  use_backend trivy-vm-be if host_trivy
  default_backend be_no_site

backend trivy-vm-be
  option httpchk GET /healthz
  http-check expect string ok
  default-server inter 1s fall 2 rise 1
  server trivy-0 ${endpoint(state, 'trivy')} check
${(state.edgeServers ?? []).map((e) => `  server ${e.name} ${e.address}:${e.port} check\n`).join('')}

backend be_no_site
  http-request return status 404 content-type text/plain string "no such site"
`
}

async function startComponent(name: ServiceName, state: SandboxState, p: SandboxPaths, tools: Tools, opts: { pkgMode?: 'die-midway' } = {}): Promise<number> {
  const log = join(p.logs, `${name}.log`)
  switch (name) {
    case 'jenkins':
      // The stand-in reads its seed (its API user and the credential holding the sandbox token) from a 0600 file.
      return spawnDaemon(...onNode(state, 'jenkins', process.execPath, [join(projectRoot(), 'test', 'standins', 'jenkins-node.mjs'), componentAddr(state, 'jenkins'), String(state.ports.jenkins), p.jenkinsSeed]), {
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
      await execa(tools.haproxy, ['-c', '-f', p.haproxyCfg], { timeout: 10_000 }).catch((err: { stderr?: string }) => {
        const alerts = (err.stderr ?? '').split('\n').filter((l) => l.includes('ALERT')).join(' ')
        throw new LabctlError(`generated HAProxy config ${p.haproxyCfg} is invalid: ${oneLine(alerts)}`, { suggestion: 'this is a labctl bug; report it' })
      })
      return spawnDaemon(...onNode(state, 'edge', tools.haproxy, ['-db', '-f', p.haproxyCfg]), { log })
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

/** HAProxy's view of the backend: /healthz through the TLS edge, by the public name, answers ok. */
export async function edgeHealthy(state: SandboxState): Promise<boolean> {
  if (!reachable(state)) return false
  const p = sandboxPaths(state.dir)
  const agent = labAgent({ dnsServers: [endpoint(state, 'dns')], dnsTimeoutMs: 1000, caFile: p.caCert, connectTimeoutMs: 1000 })
  try {
    const res = await httpRequest(`https://${SANDBOX_NAMES.publicName}:${state.ports.haproxy}/healthz`, { dispatcher: agent, timeoutMs: 1000 })
    return res.status === 200 && res.body.trim() === 'ok'
  } catch {
    return false
  } finally {
    await agent.close()
  }
}

export async function stopComponent(name: ServiceName, state: SandboxState): Promise<void> {
  if (name === 'trivy') await systemctl(state, 'stop', SERVICE).catch(() => undefined)
  else if (name === 'host') await stopHost(state, sandboxPaths(state.dir))
  else await stopProcess(state.pids[name])
  delete state.pids[name]
  writeState(state)
}

export async function writeServerCert(p: SandboxPaths, opts: CertOptions): Promise<void> {
  const ca = { certPem: readFileSync(p.caCert, 'utf8'), keyPem: readFileSync(p.caKey, 'utf8') }
  const { issueServerCert } = await import('./tls.js')
  const cert = await issueServerCert(ca, opts)
  writePrivateFile(p.publicPem, `${cert.certPem}${cert.keyPem}`)
}

/** The sandbox Jenkins: labctl's API user and the credential the pipelines read the token from. */
export const JENKINS_USER = 'labctl'
export const JENKINS_CREDENTIAL = 'trivy-server-token'

/** Seeds the Jenkins stand-in: labctl's API user (token in a 0600 file) and the credential holding the sandbox token. */
function writeJenkinsSeed(p: SandboxPaths): void {
  if (!existsSync(p.jenkinsToken)) writePrivateFile(p.jenkinsToken, `${randomBytes(24).toString('hex')}\n`)
  const seed = {
    users: [{ name: JENKINS_USER, apiToken: readFileSync(p.jenkinsToken, 'utf8').trim() }],
    credentials: [{ store: 'system', id: JENKINS_CREDENTIAL, secret: readFileSync(p.token, 'utf8').trim(), description: 'Trivy server token (labctl sandbox)' }],
  }
  writePrivateFile(p.jenkinsSeed, `${JSON.stringify(seed)}\n`)
}

/** Who may reach the listener directly in the lab network, besides the edge. */
export function firewallAllowlist(state: SandboxState): string[] {
  return state.net ? [state.net.workstation, nodeAddr(state, 'agent')] : []
}

function sandboxInventory(state: SandboxState, p: SandboxPaths): Record<string, unknown> {
  return {
    name: 'sandbox',
    description: state.bare
      ? 'local sandbox lab started by `labctl sandbox up --bare`: the scanner host has no trivy until `labctl trivy install`'
      : state.net
        ? `local sandbox lab started by \`labctl sandbox up --net\` (real Trivy, HAProxy, dnsmasq, registry, each on its own network namespace on ${state.net.subnet})`
        : 'local sandbox lab started by `labctl sandbox up` (real Trivy, HAProxy, dnsmasq, registry on 127.0.0.1)',
    dns: { servers: [endpoint(state, 'dns')], timeoutMs: 1000 },
    trivy: {
      version: TRIVY_VERSION,
      publicUrl: `https://${SANDBOX_NAMES.publicName}:${state.ports.haproxy}`,
      caBundle: p.caCert,
      tokenHeader: 'Trivy-Token',
      cacheDir: '/var/lib/trivy',
      serviceName: SERVICE,
      envFile: '/etc/trivy/trivy-server.env',
      dbRepositories: [`${endpoint(state, 'registry')}/${DB_MIRROR_REPO}`],
      ...(state.ports.pkg ? { packageUrl: sandboxPackageUrl(state.ports.pkg, componentAddr(state, 'pkg')) } : {}),
      // Besides the edge, the listener answers the operator's workstation and the build agent; not the outsider.
      ...(state.net ? { allowlist: firewallAllowlist(state) } : {}),
      hosts: [
        {
          name: 'trivy-0',
          fqdn: SANDBOX_NAMES.fqdn,
          aliases: [SANDBOX_NAMES.alias],
          address: nodeAddr(state, 'trivy-0'),
          listen: endpoint(state, 'trivy'),
          debugUrl: `http://${SANDBOX_NAMES.fqdn}:${state.ports.trivy}`,
          ssh: {
            user: HOST_USER,
            port: state.ports.host,
            identityFile: hostPaths(p).clientKey,
            knownHostsFile: hostPaths(p).knownHosts,
            connectTimeoutMs: 5000,
          },
          sudo: true,
        },
      ],
    },
    ...(state.ports.jenkins
      ? { jenkins: { url: `http://${endpoint(state, 'jenkins')}`, credentialId: JENKINS_CREDENTIAL, store: 'system', user: JENKINS_USER, apiTokenFile: p.jenkinsToken } }
      : {}),
    secrets: { dir: p.secrets },
    thresholds: { dbFreshnessHours: 48, diskWarnPercent: 80, diskCritPercent: 90, certWarnDays: 21, certCritDays: 7 },
  }
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

export async function sandboxUp(opts: { dir?: string; progress?: Progress; bare?: boolean; net?: boolean } = {}): Promise<SandboxUpResult> {
  const started = Date.now()
  const dir = opts.dir ?? sandboxDir()
  const progress = opts.progress ?? (() => {})
  const bare = opts.bare === true
  const net = opts.net ?? process.env.LABCTL_SANDBOX_NET === '1'
  // Before anything else: without the right to make namespaces, nothing is made.
  if (net) requireNetCapable()
  const tools = findTools()
  const before = await sandboxStatus(dir)
  if (before.up && Boolean(before.network) !== net) {
    throw new LabctlError(`the sandbox is already up ${before.network ? 'as a lab network (--net)' : 'on 127.0.0.1'}; it cannot switch to ${net ? 'a lab network' : '127.0.0.1'} while up`, {
      code: 'SANDBOX_MODE',
      suggestion: `run \`labctl sandbox down\` first, then \`labctl sandbox up${net ? ' --net' : ''}\``,
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
    for (const name of COMPONENTS) {
      if (name === 'trivy') {
        if (bare) {
          progress('trivy-0: provisioning a bare host (users, sudo, systemd stand-in; no trivy, no unit, no DB)')
          await provisionHost(state, p, tools, readFileSync(p.token, 'utf8').trim(), { bare: true })
          continue
        }
        progress('trivy-0: provisioning (users, sudo, systemd stand-in, trivy, unit) and building the DB from test/fixtures/db')
        await provisionHost(state, p, tools, readFileSync(p.token, 'utf8').trim())
        await buildHostDb(state, tools)
        if (state.net) {
          progress(`trivy-0: firewall (nftables in its namespace): port ${state.ports.trivy} only from the edge, the workstation and the agent`)
          await applyHostFirewall(state, [nodeAddr(state, 'edge'), ...firewallAllowlist(state)])
        }
      }
      progress(`${name === 'host' ? 'trivy-0 sshd' : name}: starting on ${endpoint(state, name)}`)
      await restartComponent(name, state, tools)
      if (name === 'registry') {
        progress(`package source: serving it on ${endpoint(state, 'pkg')}`)
        await restartComponent('pkg', state, tools)
      }
    }
    if (state.ports.jenkins) {
      progress(`jenkins: the credentials-plugin stand-in on ${endpoint(state, 'jenkins')}, seeded with the sandbox token`)
      writeJenkinsSeed(p)
      await restartComponent('jenkins', state, tools)
    }
    progress('registry: publishing the DB as an OCI artifact (the offline DB mirror)')
    const mirrorDb = join(p.dir, 'db-mirror')
    const fixturesDir = join(projectRoot(), 'test', 'fixtures', 'db')
    const fixtures = readdirSync(fixturesDir).filter((f) => f.endsWith('.yaml')).map((f) => join(fixturesDir, f))
    await execa(tools.labfixtures, ['db', '--out', mirrorDb, '--fixtures', fixtures.join(',')], { timeout: 60_000 })
    // labfixtures pushes to loopback only: in the lab network it runs on the registry's machine.
    await execa(...onNode(state, 'registry', tools.labfixtures, ['dbpush', '--db', mirrorDb, '--to', `127.0.0.1:${state.ports.registry}/${DB_MIRROR_REPO}`]), { timeout: 60_000 })
    progress(`registry: pushing ${TEST_IMAGE} with skopeo`)
    await execa(
      tools.skopeo,
      ['copy', '--quiet', '--dest-tls-verify=false', `oci:${p.image}:1`, `docker://${endpoint(state, 'registry')}/${TEST_IMAGE}`],
      { timeout: 60_000, env: { HOME: p.dir } },
    )
    if (state.net) {
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
    mkdirSync(labsDir(), { recursive: true })
    writeFileSync(state.inventoryPath, `# generated by \`labctl sandbox up\`; removed by \`labctl sandbox down\`\n${stringify(sandboxInventory(state, p))}`)
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
