// Restart the Trivy service on a host and wait until it answers again, directly and through the edge.
// The one restart-and-wait: `trivy restart` and the token rotation both use it.
import { LabctlError } from '../errors.js'
import type { LoadedInventory } from '../inventory/load.js'
import type { ScannerHost } from '../inventory/schema.js'
import type { Remote } from '../ssh/index.js'
import { edgeBase, hostBase, trivyAgent } from './endpoint.js'
import { waitHealthy } from './health.js'

export type RestartResult = { host: string; downMs: number }

export type RestartOptions = {
  loaded: LoadedInventory
  host: ScannerHost
  /** The run's SSH session. */
  remote: Remote
  /** How long to wait for /healthz (directly and through the edge), counted from the restart. */
  waitMs: number
  signal?: AbortSignal | undefined
}

export async function restartService(opts: RestartOptions): Promise<RestartResult> {
  const { loaded, host, remote } = opts
  const inv = loaded.inventory
  const t = inv.trivy
  const started = Date.now()
  await remote.run(host, ['systemctl', 'restart', t.serviceName], { sudo: true, timeoutMs: 90_000, check: true, ...(opts.signal ? { signal: opts.signal } : {}) })
  const agent = trivyAgent(loaded)
  try {
    const w = await waitHealthy({ bases: [hostBase(inv, host), edgeBase(inv)], dispatcher: agent, waitMs: Math.max(0, opts.waitMs - (Date.now() - started)), signal: opts.signal })
    if (!w.healthy) {
      throw new LabctlError(`${host.name}: ${t.serviceName} did not answer /healthz within ${opts.waitMs / 1000} s after the restart (${w.last})`, {
        code: 'UNHEALTHY_AFTER_RESTART',
        suggestion: `read why: \`labctl trivy logs --host ${host.name} -n 50\` (a corrupted DB? \`labctl trivy reset-db --host ${host.name}\`)`,
      })
    }
    return { host: host.name, downMs: Date.now() - started }
  } finally {
    await agent.close()
  }
}
