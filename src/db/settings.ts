// The mirror's settings from the inventory's `mirror:` section, flags overriding it.
import type { Agent } from 'undici'
import { UsageError } from '../errors.js'
import { inventoryPath, type LoadedInventory } from '../inventory/load.js'
import type { Inventory } from '../inventory/schema.js'
import { labAgent } from '../net/http.js'
import { ARTIFACTS, ARTIFACT_KEYS, type ArtifactKey } from './ref.js'

export type MirrorSection = NonNullable<Inventory['mirror']>

const SOURCE_KEY: Record<ArtifactKey, keyof MirrorSection['sources']> = { db: 'db', 'java-db': 'javaDb', checks: 'checks' }

/** Source reference per artifact: the flag, else the inventory's mirror.sources, else the public registry. */
export function mirrorSources(mirror: MirrorSection | undefined, overrides: Partial<Record<ArtifactKey, string | undefined>> = {}): Record<ArtifactKey, string> {
  return Object.fromEntries(ARTIFACT_KEYS.map((k) => [k, overrides[k] ?? mirror?.sources[SOURCE_KEY[k]] ?? ARTIFACTS[k].source])) as Record<ArtifactKey, string>
}

/** `--only db,java-db,checks` (default all three). */
export function parseOnly(text: string | undefined): ArtifactKey[] {
  if (!text) return [...ARTIFACT_KEYS]
  const keys = text.split(',').map((s) => s.trim()).filter(Boolean)
  for (const k of keys) {
    if (!ARTIFACT_KEYS.includes(k as ArtifactKey)) throw new UsageError(`--only: unknown artifact "${k}"`, { suggestion: `use a comma list of ${ARTIFACT_KEYS.join(', ')}` })
  }
  return [...new Set(keys)] as ArtifactKey[]
}

export function requireMirror(loaded: LoadedInventory | undefined): MirrorSection {
  const m = loaded?.inventory.mirror
  if (!m) {
    throw new UsageError(`the inventory${loaded ? ` ${loaded.path}` : ''} has no mirror: section (the lab registry)`, {
      suggestion: 'add `mirror: { registry: HOST:PORT }` to the inventory (README "Inventory reference"), or use --to-dir DIR',
    })
  }
  return m
}

/** HTTP agents for the lab registry (lab DNS, its CA bundle) and for the source registries. */
export function mirrorAgents(loaded: LoadedInventory | undefined, timeoutMs: number): { target: Agent; source: Agent } {
  const inv = loaded?.inventory
  const dns = inv ? { dnsServers: inv.dns.servers, dnsTimeoutMs: inv.dns.timeoutMs } : {}
  const ca = inv?.mirror?.caBundle && loaded ? inventoryPath(loaded, inv.mirror.caBundle) : undefined
  return { target: labAgent({ ...dns, caFile: ca, connectTimeoutMs: timeoutMs }), source: labAgent({ ...dns, connectTimeoutMs: timeoutMs }) }
}
