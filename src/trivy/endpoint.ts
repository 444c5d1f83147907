// Where labctl talks HTTP to the scanner: a host directly (its debug URL) or the edge (the public URL
// through HAProxy), and the one HTTP agent for it (lab DNS, the lab CA bundle, a connect timeout).
import type { Agent } from 'undici'
import { inventoryPath, type LoadedInventory } from '../inventory/load.js'
import type { Inventory, ScannerHost } from '../inventory/schema.js'
import { labAgent } from '../net/http.js'

/** The edge: the public URL through HAProxy. */
export const edgeBase = (inv: Inventory): string => inv.trivy.publicUrl

/** A host's own endpoint (origin of its debug URL), when the inventory has one. */
export const directBase = (host: ScannerHost): string | undefined => (host.debugUrl ? new URL(host.debugUrl).origin : undefined)

/** Where to reach one host's server: directly when possible, else through the edge. */
export const hostBase = (inv: Inventory, host: ScannerHost): string => directBase(host) ?? edgeBase(inv)

/** The lab CA bundle as a path, when the inventory names one. */
export const trivyCaFile = (loaded: LoadedInventory): string | undefined => (loaded.inventory.trivy.caBundle ? inventoryPath(loaded, loaded.inventory.trivy.caBundle) : undefined)

/** The HTTP agent for the scanner: names through the lab DNS, TLS verified against the lab CA. Close it after use. */
export function trivyAgent(loaded: LoadedInventory, opts: { connectTimeoutMs?: number } = {}): Agent {
  const inv = loaded.inventory
  return labAgent({
    dnsServers: inv.dns.servers,
    dnsTimeoutMs: inv.dns.timeoutMs,
    caFile: trivyCaFile(loaded),
    ...(opts.connectTimeoutMs !== undefined ? { connectTimeoutMs: opts.connectTimeoutMs } : {}),
  })
}
