import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { LabctlError, UsageError } from '../errors.js'
import { readState, sandboxDir, sandboxPaths, SANDBOX_NAMES, writeState, type SandboxState } from './layout.js'
import { edgeHealthy, restartComponent, stopComponent, writeServerCert } from './index.js'
import { buildHostDb, CACHE_DIR, hostExec, SERVICE, writeHostEnv } from './host.js'
import { isAlive, spawnDaemon, stopProcess, waitFor, portOpen } from './proc.js'
import { findTools } from './prereqs.js'

const DAY = 86_400_000

/** Faults a drill can inject into the sandbox; each is a real change to a real part. */
export const FAULTS = {
  'wrong-token': 'the server accepts a different token than the one in the secrets dir',
  'service-stopped': 'the Trivy server is stopped (HAProxy answers 503)',
  hung: 'the Trivy listener accepts connections and never answers',
  'no-db': 'the server runs without a usable DB (metadata of a download that never completed)',
  'db-corrupt': 'trivy.db is overwritten with garbage',
  'db-stale': 'the DB metadata says it was last updated 72 h ago',
  'dns-removed': 'the public name is removed from the lab DNS',
  'cert-expired': 'the public certificate expired yesterday',
  'cert-expiring': 'the public certificate expires in 3 days',
  'cert-wrong-name': 'the public certificate is for another name',
  'restart-fails': 'the next start of the Trivy service fails (its unit errors once)',
} as const
export type Fault = keyof typeof FAULTS

function requireUp(dir: string): SandboxState {
  const state = readState(dir)
  if (!state) throw new LabctlError('the sandbox is not up', { code: 'SANDBOX_DOWN', suggestion: 'run `labctl sandbox up` first' })
  return state
}

export async function breakSandbox(fault: string, dir = sandboxDir()): Promise<{ fault: Fault; description: string }> {
  if (!(fault in FAULTS)) throw new UsageError(`unknown fault "${fault}"`, { suggestion: `use one of: ${Object.keys(FAULTS).join(', ')}` })
  const f = fault as Fault
  const state = requireUp(dir)
  const p = sandboxPaths(dir)
  const tools = findTools()
  switch (f) {
    case 'wrong-token':
      await writeHostEnv(state, randomBytes(32).toString('base64url'))
      await restartComponent('trivy', state, tools)
      break
    case 'service-stopped': {
      await stopComponent('trivy', state)
      // The fault is in effect only when nothing answers on the listener and the edge says so too.
      const down = await waitFor(async () => !(await portOpen(state.ports.trivy)) && !(await edgeHealthy(state)), 10_000)
      if (!down) throw new LabctlError(`something still answers on 127.0.0.1:${state.ports.trivy} after stopping the service`, { suggestion: 'check for a stray trivy process (ps -ef | grep trivy)' })
      break
    }
    case 'hung': {
      await stopComponent('trivy', state)
      // A listener that accepts and then says nothing: what a wedged server looks like from outside.
      const script = `require('net').createServer((s)=>s.on('error',()=>{})).listen(${state.ports.trivy},'127.0.0.1')`
      state.hungPid = spawnDaemon(process.execPath, ['-e', script], { log: join(p.logs, 'hung.log') })
      await waitFor(() => portOpen(state.ports.trivy), 5000)
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
  if (state.hungPid && isAlive(state.hungPid)) await stopProcess(state.hungPid)
  delete state.hungPid
  if (has('wrong-token')) {
    await writeHostEnv(state, readFileSync(p.token, 'utf8').trim())
    restartTrivy = true
  }
  if (has('no-db', 'db-corrupt', 'db-stale')) {
    await buildHostDb(state, tools)
    restartTrivy = true
  }
  if (has('service-stopped', 'hung')) restartTrivy = true
  if (has('restart-fails')) await hostExec(state, ['rm', '-f', `/var/lib/labctl-standin/${SERVICE}.fail-start`])
  if (has('dns-removed')) {
    state.dnsRecords = [
      { name: SANDBOX_NAMES.fqdn, address: '127.0.0.1' },
      { name: SANDBOX_NAMES.alias, cname: SANDBOX_NAMES.fqdn },
      { name: SANDBOX_NAMES.publicName, address: '127.0.0.1' },
    ]
    await restartComponent('dns', state, tools)
  }
  if (has('cert-expired', 'cert-expiring', 'cert-wrong-name')) {
    await writeServerCert(p, { names: [...SANDBOX_NAMES.certNames] })
    await restartComponent('haproxy', state, tools)
  }
  if (restartTrivy) await restartComponent('trivy', state, tools)
  state.faults = []
  writeState(state)
  return { healed }
}
