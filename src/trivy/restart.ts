// Restart the Trivy service on a host and wait until it answers again, directly and through the edge.
import { LabctlError } from '../errors.js'
import { inventoryPath, type LoadedInventory } from '../inventory/load.js'
import type { ScannerHost } from '../inventory/schema.js'
import { labAgent } from '../net/http.js'
import { run } from '../ssh/index.js'
import { getHealthz } from './api.js'

export type RestartResult = { host: string; downMs: number }

export async function restartService(loaded: LoadedInventory, host: ScannerHost, opts: { waitMs: number; signal?: AbortSignal }): Promise<RestartResult> {
  const inv = loaded.inventory
  const t = inv.trivy
  const started = Date.now()
  await run(host, ['systemctl', 'restart', t.serviceName], { sudo: true, timeoutMs: 90_000, check: true, ...(opts.signal ? { signal: opts.signal } : {}) })
  const caFile = t.caBundle ? inventoryPath(loaded, t.caBundle) : undefined
  const agent = labAgent({ dnsServers: inv.dns.servers, dnsTimeoutMs: inv.dns.timeoutMs, caFile })
  const base = host.debugUrl ? new URL(host.debugUrl).origin : t.publicUrl
  const ok = (url: string) => getHealthz(url, { dispatcher: agent, timeoutMs: 2000 }).then((r) => r.status === 200, () => false)
  try {
    for (;;) {
      if (opts.signal?.aborted) throw opts.signal.reason
      if ((await ok(base)) && (base === t.publicUrl || (await ok(t.publicUrl)))) return { host: host.name, downMs: Date.now() - started }
      if (Date.now() - started > opts.waitMs) {
        throw new LabctlError(`${host.name}: ${t.serviceName} did not answer /healthz within ${opts.waitMs / 1000} s after the restart`, {
          suggestion: `read why: \`labctl trivy logs --host ${host.name} -n 50\` (a corrupted DB? \`labctl trivy reset-db --host ${host.name}\`)`,
        })
      }
      await new Promise((r) => setTimeout(r, 200))
    }
  } finally {
    await agent.close()
  }
}
