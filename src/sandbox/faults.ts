import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { LabctlError, UsageError } from '../errors.js'
import { readState, sandboxDir, sandboxPaths, SANDBOX_NAMES, writeState, type SandboxState } from './layout.js'
import { edgeHealthy, restartComponent, stopComponent, writeServerCert } from './components.js'
import { labRecords } from './index.js'
import { componentAddr, endpoint } from './nodes.js'
import { buildHostDb, CACHE_DIR, hostExec, hostHasService, SERVICE, trivyPid, unitFile, writeHostEnv } from './host.js'
import { isAlive, waitFor, portOpen } from './proc.js'
import { findTools } from './prereqs.js'
import { breakNet, healNet, isNetFault, NET_FAULTS } from './netfaults.js'

const DAY = 86_400_000

/** Faults a drill can inject into the sandbox; each is a real change to a real part. */
export const FAULTS = {
  'wrong-token': 'the server accepts a different token than the one in the secrets dir',
  'service-stopped': 'the Trivy server is stopped (HAProxy answers 503)',
  hung: 'the Trivy server is frozen: it accepts connections and never answers',
  'no-db': 'the server runs without a usable DB (metadata of a download that never completed)',
  'db-corrupt': 'trivy.db is overwritten with garbage',
  'db-stale': 'the DB metadata says it was last updated 72 h ago',
  'dns-removed': 'the public name is removed from the lab DNS',
  'cert-expired': 'the public certificate expired yesterday',
  'cert-expiring': 'the public certificate expires in 3 days',
  'cert-wrong-name': 'the public certificate is for another name',
  'restart-fails': 'the next start of the Trivy service fails (its unit errors once)',
  'disk-full': 'the cache dir /var/lib/trivy is on a small filesystem of its own, filled to ~99% (the DB copied in)',
  'version-drift': "the host's /usr/bin/trivy reports 0.73.0 (a wrapper around the real binary), not the pin",
  'pkg-source-down': 'the package source breaks off the next .deb download half-way and goes down (nothing answers after)',
  ...NET_FAULTS,
} as const
export type Fault = keyof typeof FAULTS

/** The version the version-drift fault's wrapper reports. */
export const DRIFT_VERSION = '0.73.0'
const DRIFT_DIR = '/usr/libexec/labctl-sandbox'
const DRIFT_MARK = 'labctl sandbox fault version-drift'
const DISK_FULL_SOURCE = 'labctl-disk-full'

// A small tmpfs with a copy of the cache dir (DB included) moved over /var/lib/trivy inside the host's
// mount namespace, then filled to ~99% with a file under fanal/ (the scan cache, which is what
// `trivy clean --scan-cache` clears). The real /var/lib/trivy underneath is untouched.
const DISK_FULL_SCRIPT = `set -eu
d=${CACHE_DIR}
if [ "$(findmnt -n -o SOURCE --target "$d" 2>/dev/null)" = ${DISK_FULL_SOURCE} ]; then exit 0; fi
used=$(du -sk "$d" | cut -f1)
size=$((used * 2 + 16384))
stage=/run/labctl-disk-full
mkdir -p "$stage"
mount -t tmpfs -o "size=\${size}k,mode=0750,uid=$(id -u trivy),gid=$(id -g trivy)" ${DISK_FULL_SOURCE} "$stage"
cp -a "$d/." "$stage/"
mount --move "$stage" "$d"
install -d -o trivy -g trivy -m 0700 "$d/fanal"
total=$(df -P -k "$d" | awk 'NR==2 {print $2}')
avail=$(df -P -k "$d" | awk 'NR==2 {print $4}')
fill=$((avail - total / 100))
if [ "$fill" -gt 0 ]; then
  fallocate -l "\${fill}k" "$d/fanal/labctl-disk-full.fill" 2>/dev/null || dd if=/dev/zero of="$d/fanal/labctl-disk-full.fill" bs=1k count="$fill" 2>/dev/null
  chown trivy:trivy "$d/fanal/labctl-disk-full.fill"
fi
df -P "$d" | awk 'NR==2 {print $5}'
`
const DISK_FULL_HEAL = `d=${CACHE_DIR}
if [ "$(findmnt -n -o SOURCE --target "$d" 2>/dev/null)" = ${DISK_FULL_SOURCE} ]; then umount "$d" 2>/dev/null || umount -l "$d"; fi
rmdir /run/labctl-disk-full 2>/dev/null || true
`
// /usr/bin/trivy becomes a wrapper printing another version for --version and running the real binary
// (moved aside inside the host's /usr overlay) for everything else: the server keeps working.
const VERSION_DRIFT_SCRIPT = `set -eu
if grep -q '${DRIFT_MARK}' /usr/bin/trivy 2>/dev/null; then exit 0; fi
mkdir -p ${DRIFT_DIR}
mv /usr/bin/trivy ${DRIFT_DIR}/trivy-real
cat > /usr/bin/trivy.labctl-tmp <<'WRAPPER'
#!/bin/sh
# ${DRIFT_MARK}: reports another version than the pin, runs the real binary otherwise
case "\${1:-}" in
  --version|-v|version) printf 'Version: ${DRIFT_VERSION}\\n'; exit 0 ;;
esac
exec ${DRIFT_DIR}/trivy-real "$@"
WRAPPER
chmod 0755 /usr/bin/trivy.labctl-tmp
mv /usr/bin/trivy.labctl-tmp /usr/bin/trivy
`
const VERSION_DRIFT_HEAL = `set -eu
if grep -q '${DRIFT_MARK}' /usr/bin/trivy 2>/dev/null && [ -x ${DRIFT_DIR}/trivy-real ]; then mv ${DRIFT_DIR}/trivy-real /usr/bin/trivy; fi
rm -rf ${DRIFT_DIR}
`

function requireUp(dir: string): SandboxState {
  const state = readState(dir)
  if (!state) throw new LabctlError('the sandbox is not up', { code: 'SANDBOX_DOWN', suggestion: 'run `labctl sandbox up` first' })
  return state
}

async function requireService(state: SandboxState, f: Fault): Promise<void> {
  if (state.bare && !(await hostHasService(state))) {
    throw new LabctlError(`fault ${f} needs Trivy on the host, and this bare sandbox host has none yet`, { code: 'SANDBOX_BARE', suggestion: 'run `labctl trivy install --lab sandbox --yes` first' })
  }
}

export async function breakSandbox(fault: string, dir = sandboxDir(), opts: { node?: string; afterMs?: number } = {}): Promise<{ fault: Fault; description: string }> {
  if (!(fault in FAULTS)) throw new UsageError(`unknown fault "${fault}"`, { suggestion: `use one of: ${Object.keys(FAULTS).join(', ')}` })
  const f = fault as Fault
  if (opts.node !== undefined && f !== 'link-down') throw new UsageError(`fault ${f} takes no node`, { suggestion: 'only link-down takes one, e.g. `labctl sandbox break link-down trivy-0`' })
  if (opts.afterMs !== undefined && f !== 'ssh-cut') throw new UsageError(`fault ${f} takes no --after`, { suggestion: 'only ssh-cut has a delay, e.g. `labctl sandbox break ssh-cut --after 2s`' })
  const state = requireUp(dir)
  const p = sandboxPaths(dir)
  const tools = findTools()
  if (isNetFault(f)) {
    const description = await breakNet(state, f, opts, { edgeHealthy, stop: (name, s) => stopComponent(name, s) })
    state.faults = [...new Set([...(state.faults ?? []), f])]
    writeState(state)
    return { fault: f, description }
  }
  switch (f) {
    case 'wrong-token':
      await writeHostEnv(state, randomBytes(32).toString('base64url'))
      await restartComponent('trivy', state, tools)
      break
    case 'service-stopped': {
      await stopComponent('trivy', state)
      // The fault is in effect only when nothing answers on the listener and the edge says so too.
      const down = await waitFor(async () => !(await portOpen(state.ports.trivy, componentAddr(state, 'trivy'))) && !(await edgeHealthy(state)), 10_000)
      if (!down) throw new LabctlError(`something still answers on ${endpoint(state, 'trivy')} after stopping the service`, { suggestion: 'check for a stray trivy process (ps -ef | grep trivy)' })
      break
    }
    case 'hung': {
      // The server process itself is frozen (SIGSTOP): the kernel still completes connections into its
      // listen backlog, nothing ever answers — a wedged server. A restart (TERM, then KILL) cures it.
      const pid = trivyPid(p)
      if (!pid) throw new LabctlError('the Trivy service is not running', { suggestion: 'run `labctl sandbox heal` first' })
      process.kill(pid, 'SIGSTOP')
      state.hungPid = pid
      break
    }
    case 'no-db': {
      // Trivy refuses to start with no DB at all under --skip-db-update; zero dates are what an
      // unfinished download leaves, and /version then shows no VulnerabilityDB.
      const zero = '0001-01-01T00:00:00Z'
      const meta = JSON.stringify({ Version: 2, NextUpdate: zero, UpdatedAt: zero, DownloadedAt: zero })
      await hostExec(state, ['sh', '-c', `cat > ${CACHE_DIR}/db/metadata.json`], { input: meta })
      await restartComponent('trivy', state, tools)
      break
    }
    case 'db-corrupt':
      await hostExec(state, ['sh', '-c', `cat > ${CACHE_DIR}/db/trivy.db`], { input: randomBytes(64 * 1024).toString('latin1') })
      // It will not come up on a corrupted DB (systemd keeps restarting it): do not wait for it.
      await restartComponent('trivy', state, tools, { wait: false })
      break
    case 'db-stale':
      await buildHostDb(state, tools, { updatedAt: new Date(Date.now() - 72 * 3_600_000), nextUpdate: new Date(Date.now() - 60 * 3_600_000) })
      await restartComponent('trivy', state, tools)
      break
    case 'dns-removed':
      state.dnsRecords = state.dnsRecords.filter((r) => r.name !== SANDBOX_NAMES.publicName)
      await restartComponent('dns', state, tools)
      break
    case 'cert-expired':
      await writeServerCert(p, { names: [...SANDBOX_NAMES.certNames], notBefore: new Date(Date.now() - 90 * DAY), notAfter: new Date(Date.now() - DAY) })
      await restartComponent('haproxy', state, tools)
      break
    case 'cert-expiring':
      await writeServerCert(p, { names: [...SANDBOX_NAMES.certNames], notAfter: new Date(Date.now() + 3 * DAY) })
      await restartComponent('haproxy', state, tools)
      break
    case 'restart-fails':
      await hostExec(state, ['sh', '-c', `echo 1 > /var/lib/labctl-standin/${SERVICE}.fail-start`])
      break
    case 'cert-wrong-name':
      await writeServerCert(p, { names: ['other.apps.example.test'] })
      await restartComponent('haproxy', state, tools)
      break
    case 'disk-full':
      await requireService(state, f)
      await hostExec(state, ['sh', '-c', DISK_FULL_SCRIPT])
      break
    case 'version-drift':
      await requireService(state, f)
      await hostExec(state, ['sh', '-c', VERSION_DRIFT_SCRIPT])
      await restartComponent('trivy', state, tools)
      break
    case 'pkg-source-down':
      if (!state.ports.pkg) throw new LabctlError('this sandbox has no package source (started by an older labctl)', { suggestion: '`labctl sandbox down && labctl sandbox up`' })
      await restartComponent('pkg', state, tools, { pkgMode: 'die-midway' })
      break
  }
  state.faults = [...new Set([...(state.faults ?? []), f])]
  writeState(state)
  return { fault: f, description: FAULTS[f] }
}

/**
 * Undoes the recorded faults (or, with `all`, resets every part): the server's token, DB, DNS records,
 * certificate and processes back to healthy. Only what was broken is touched, so healing is quick.
 */
export async function healSandbox(dir = sandboxDir(), opts: { all?: boolean } = {}): Promise<{ healed: string[] }> {
  const state = requireUp(dir)
  const p = sandboxPaths(dir)
  const tools = findTools()
  const healed = state.faults ?? []
  const all = opts.all === true
  const has = (...fs: Fault[]) => all || fs.some((f) => healed.includes(f))
  let restartTrivy = false
  // The network first: with a link down or SSH cut, nothing below could reach trivy-0.
  await healNet(state, healed, all, { edgeHealthy, restart: (name, s) => restartComponent(name, s, tools) })
  if (state.hungPid && isAlive(state.hungPid)) {
    try {
      process.kill(state.hungPid, 'SIGCONT')
    } catch {
      /* already gone */
    }
  }
  delete state.hungPid
  // A bare sandbox host before `labctl trivy install` has no service, env file, user or DB to reset.
  const hostUp = isAlive(state.pids.host)
  const service = !state.bare || (hostUp && (await hostHasService(state)))
  if (has('wrong-token') && service) {
    await writeHostEnv(state, readFileSync(p.token, 'utf8').trim())
    restartTrivy = true
  }
  if (has('no-db', 'db-corrupt', 'db-stale') && service) {
    await buildHostDb(state, tools)
    restartTrivy = true
  }
  if (has('service-stopped', 'hung')) restartTrivy = true
  if (has('restart-fails')) await hostExec(state, ['rm', '-f', `/var/lib/labctl-standin/${SERVICE}.fail-start`])
  if (has('disk-full')) await hostExec(state, ['sh', '-c', DISK_FULL_HEAL])
  if (has('version-drift')) {
    await hostExec(state, ['sh', '-c', VERSION_DRIFT_HEAL])
    restartTrivy = true
  }
  if (has('pkg-source-down') && state.ports.pkg) await restartComponent('pkg', state, tools)
  if (has('dns-removed')) {
    state.dnsRecords = labRecords(state)
    await restartComponent('dns', state, tools)
  }
  if (has('cert-expired', 'cert-expiring', 'cert-wrong-name')) {
    await writeServerCert(p, { names: [...SANDBOX_NAMES.certNames] })
    await restartComponent('haproxy', state, tools)
  }
  // `labctl trivy install` (e.g. a version-drift runbook's `install --upgrade`) rewrites the unit: the full
  // sandbox goes back to its own (fast restarts, flags in argv) so later drills behave as documented.
  if (!state.bare && hostUp) {
    const unit = `/etc/systemd/system/${SERVICE}.service`
    if ((await hostExec(state, ['sh', '-c', `cat ${unit} 2>/dev/null || true`])).trimEnd() !== unitFile(state).trimEnd()) {
      await hostExec(state, ['sh', '-c', `cat > ${unit}.labctl-tmp && mv ${unit}.labctl-tmp ${unit}`], { input: unitFile(state) })
      restartTrivy = true
    }
  }
  if (restartTrivy && service) await restartComponent('trivy', state, tools)
  state.faults = []
  writeState(state)
  return { healed }
}
