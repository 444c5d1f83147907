import { randomBytes } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { execa } from 'execa'
import { stringify } from 'yaml'
import { LabctlError, errorMessage, oneLine } from '../errors.js'
import { labsDir } from '../paths.js'
import { writePrivateFile } from '../private-file.js'
import { findTools, type Tools } from './prereqs.js'
import { freePorts, isAlive, portOpen, stopProcess } from './proc.js'
import { ensureKeys, provisionHost, seedHostForInstall, SERVICE, stopHost, trivyPid, writeKnownHosts } from './host.js'
import { ensureTrivyDeb, packageRoot } from './pkgsource.js'
import { NODES, netDown, netUp, requireNetCapable } from './netns.js'
import { componentAddr, endpoint, NET_PORTS, nodeAddr, onNode, reachable } from './nodes.js'
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

import { REDIS_PORT, startRedis, stopRedis } from './redis.js'
import { startEdgeSsh, stopEdgeSsh } from './edge-ssh.js'
import { DB_MIRROR_REPO, JENKINS_CREDENTIAL, JENKINS_USER, sandboxInventory, sandboxInventoryParsed } from './inventory.js'
export { DB_MIRROR_REPO, JENKINS_CREDENTIAL, JENKINS_USER, firewallAllowlist, sandboxInventory } from './inventory.js'

export { sandboxStatus, type ComponentStatus, type NodeStatus, type SandboxStatus } from './status.js'
export { JENKINS_AGENT_PORT, dnsmasqArgs, edgeHealthy, haproxyConfig, haproxyEdgePart, restartComponent, stopComponent, writeServerCert } from './components.js'
import { sandboxStatus, type SandboxStatus } from './status.js'
import { JENKINS_AGENT_PORT, restartComponent, stopComponent, writeServerCert } from './components.js'
export type SandboxUpResult = SandboxStatus & { changed: boolean; durationMs: number }
export type SandboxDownResult = { dir: string; stopped: Array<ComponentName | 'jenkins' | 'network' | 'redis' | 'edge-sshd'>; leftover: string[] }

type Progress = (message: string) => void


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
  if (state.net) for (const n of NODES.filter((x) => x !== 'trivy-0' && state.net!.nodes[x])) records.push({ name: `${n}.${SANDBOX_NAMES.domain}`, address: nodeAddr(state, n) })
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

export async function sandboxUp(opts: { dir?: string; progress?: Progress; bare?: boolean; net?: boolean; /** the scan cache: the hosts' own fs (default) or a shared Redis (LABCTL_SANDBOX_CACHE=redis) */ cache?: 'fs' | 'redis' } = {}): Promise<SandboxUpResult> {
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
  const cache = opts.cache ?? (process.env.LABCTL_SANDBOX_CACHE === 'redis' ? 'redis' : 'fs')
  if (before.up && Boolean(before.redis) !== (cache === 'redis')) {
    throw new LabctlError(`the sandbox is already up ${before.redis ? 'with a Redis scan cache' : 'with fs scan caches'}; it cannot switch to --cache ${cache} while up`, {
      code: 'SANDBOX_MODE',
      suggestion: `run \`labctl sandbox down\` first, then \`labctl sandbox up --cache ${cache}\``,
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
    if (cache === 'redis') {
      const port = net ? REDIS_PORT : ((await freePorts(1))[0] as number)
      progress(`redis: the shared scan cache on ${nodeAddr(state, 'redis')}:${port} (redis-server, password in the secrets dir)`)
      await startRedis(state, p, port)
      writeState(state)
    }
    progress('trivy-0: a bare machine (users, sudo, systemd stand-in; no trivy, no unit, no DB)')
    await provisionHost(state, p)
    if (!bare) {
      progress('trivy-0: the sandbox\'s own settings, which install keeps: the fixture DB in /var/lib/trivy/db and TRIVY_SKIP_DB_UPDATE=true')
      await seedHostForInstall(state, tools)
    }
    progress(`edge sshd: ${nodeAddr(state, 'edge')} (streams to HAProxy's runtime API socket only)`)
    await startEdgeSsh(state, p, net ? 22 : ((await freePorts(1))[0] as number))
    writeState(state)
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
    await stopRedis(state).catch(() => false)
    await stopEdgeSsh(state).catch(() => false)
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
  if (state && (await stopRedis(state))) stopped.push('redis')
  if (state && (await stopEdgeSsh(state))) stopped.push('edge-sshd')
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
  // A lab network goes before the leftover count: netDown also ends whatever still runs in a node's
  // namespace (a daemon slow to honour SIGTERM on a loaded machine), so only what truly outlives the
  // lab is reported. Its ports are gone with it; the processes are still checked below.
  if (state?.net) {
    const net = await netDown(state.net.id)
    leftover.push(...net.leftover)
    if (net.removed.length) stopped.push('network')
  }
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
    if (state.redis?.pid && isAlive(state.redis.pid)) leftover.push(`redis pid ${state.redis.pid}`)
    if (state.edgeSsh?.pid && isAlive(state.edgeSsh.pid)) leftover.push(`edge sshd pid ${state.edgeSsh.pid}`)
    if (isAlive(state.pids.pkg)) leftover.push(`pkg pid ${state.pids.pkg}`)
    else if (probe && state.ports.pkg && (await portOpen(state.ports.pkg, componentAddr(state, 'pkg')))) leftover.push(`pkg port ${endpoint(state, 'pkg')}`)
    if (existsSync(state.inventoryPath)) rmSync(state.inventoryPath, { force: true })
  }
  if (leftover.length === 0) rmSync(dir, { recursive: true, force: true })
  return { dir, stopped, leftover }
}
