// The exporter's ONE adapter onto labctl's probe functions (api.ts, tls-check.ts, remote.ts) and the
// shared HTTP agent / SSH session. Everything the exporter knows about those modules' signatures is in
// this file, so a refactor of them changes this file only.
import { isIP } from 'node:net'
import type { Dispatcher } from 'undici'
import { LabctlError, oneLine } from '../errors.js'
import { inventoryPath, type LoadedInventory } from '../inventory/load.js'
import type { ScannerHost } from '../inventory/schema.js'
import { resolveName } from '../net/dns.js'
import { plainHttpRefusal } from '../net/plain-http.js'
import { describeNetError, labAgent } from '../net/http.js'
import { HttpAnswerError, canaryScan, getHealthz, getVersion, unauthenticatedScanStatus } from '../trivy/api.js'
import { hostCheck } from '../trivy/check.js'
import { hostStatus } from '../trivy/remote.js'
import { inspectTls } from '../trivy/tls-check.js'
import { redactText } from '../redact.js'
import type { HttpObservation, ProbeBackend, SshObservation, Target } from './model.js'

export const EDGE = 'edge'

export type ProbeOptions = {
  loaded: LoadedInventory
  hosts: ScannerHost[]
  token: string
  /** Per-request deadline of the HTTP probe's parts (the canary is four requests: 4× this at most). */
  timeoutMs: number
  /** Deadline of each remote command of the SSH probe. */
  sshTimeoutMs: number
  /** Journal window of the SSH probe (journalctl --since), e.g. "-300s". */
  journalSince: string
  /** Allow the token over plain HTTP to a non-loopback address. */
  insecure?: boolean
  /** Probe hosts over SSH at all (false: HTTP only). */
  ssh?: boolean
  /** Trust unknown SSH host keys on first contact. */
  acceptNewHostKey?: boolean
}

/** A part of a probe under its own deadline: never waits longer than `ms`, whatever the peer does. */
function within<T>(ms: number, signal: AbortSignal, p: Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(Object.assign(new Error(`timed out after ${ms} ms`), { code: 'ETIMEDOUT' })), ms)
    const onAbort = (): void => reject(Object.assign(new Error('probe cancelled'), { code: 'ABORTED' }))
    signal.addEventListener('abort', onAbort, { once: true })
    p.then(resolve, reject).finally(() => {
      clearTimeout(timer)
      signal.removeEventListener('abort', onAbort)
    })
  })
}

/** The probe functions of one lab, with one HTTP agent (lab DNS, lab CA) and one SSH session for the exporter's life. */
export async function createProbes(o: ProbeOptions): Promise<ProbeBackend> {
  const inv = o.loaded.inventory
  const caFile = inv.trivy.caBundle ? inventoryPath(o.loaded, inv.trivy.caBundle) : undefined
  const agent: Dispatcher = labAgent({ dnsServers: inv.dns.servers, dnsTimeoutMs: inv.dns.timeoutMs, caFile, connectTimeoutMs: o.timeoutMs })
  const publicUrl = new URL(inv.trivy.publicUrl)
  const secrets = [o.token]
  const say = (err: unknown): string => {
    const text = err instanceof HttpAnswerError || err instanceof LabctlError ? err.message : describeNetError(err, o.timeoutMs)
    return oneLine(redactText(text, secrets), 300)
  }
  const useSsh = o.ssh !== false
  // The exporter's SSH session for its whole life (a lost connection is reopened on the next probe).
  const remote = useSsh ? new (await import('../ssh/remote.js')).Remote({ acceptNewHostKey: Boolean(o.acceptNewHostKey) }) : undefined

  const bases = new Map<string, string>([[EDGE, publicUrl.origin]])
  for (const h of o.hosts) if (h.debugUrl) bases.set(h.name, new URL(h.debugUrl).origin)
  const targets: Target[] = [
    { name: EDGE, http: true, ssh: false },
    ...o.hosts.map((h) => ({ name: h.name, http: bases.has(h.name), ssh: useSsh })),
  ]

  // Plain HTTP carries the token in clear: only to loopback or trivy.plainHttpNetworks, unless --insecure.
  const tokenRefusal = async (url: URL): Promise<string | undefined> => {
    const refused = await plainHttpRefusal(url, { insecure: o.insecure, networks: inv.trivy.plainHttpNetworks, dnsServers: inv.dns.servers, dnsTimeoutMs: inv.dns.timeoutMs })
    return refused ? `${refused}: the canary was not run (--insecure allows it)` : undefined
  }

  async function http(name: string, signal: AbortSignal): Promise<HttpObservation> {
    const base = bases.get(name)
    if (!base) throw new LabctlError(`no HTTP endpoint for ${name}`)
    const t = o.timeoutMs
    const obs: HttpObservation = { errors: [] }
    const part = async (what: string, fn: () => Promise<void>, ms = t): Promise<void> => {
      try {
        await within(ms, signal, fn())
      } catch (err) {
        obs.errors.push(`${what}: ${say(err)}`)
      }
    }
    const tp = { baseUrl: base, tokenHeader: inv.trivy.tokenHeader, dispatcher: agent, timeoutMs: t }
    const parts = [
      part('healthz', async () => {
        obs.healthz = false
        const res = await getHealthz(base, { dispatcher: agent, timeoutMs: t })
        obs.healthz = res.status === 200 && res.body.trim() === 'ok'
      }),
      part('version', async () => {
        const v = await getVersion(base, { dispatcher: agent, timeoutMs: t })
        // A label value: one line, bounded (a peer chooses it); the token is redacted when served.
        obs.version = oneLine(redactText(v.Version.replace(/^v/, ''), secrets), 64)
        const db = v.VulnerabilityDB
        const secs = (s: string | undefined): number | undefined => {
          const ms = s && !s.startsWith('0001-') ? Date.parse(s) : NaN
          return Number.isFinite(ms) ? Math.round(ms / 1000) : undefined
        }
        const updated = secs(db?.UpdatedAt)
        const next = secs(db?.NextUpdate)
        obs.db = { present: Boolean(db), ...(updated !== undefined ? { updatedAtSeconds: updated } : {}), ...(next !== undefined ? { nextUpdateSeconds: next } : {}) }
      }),
      part(
        'canary',
        async () => {
          const started = performance.now()
          obs.canary = { success: false, durationSeconds: 0, vulnerabilities: 0 }
          const refused = await tokenRefusal(new URL(base))
          if (refused) throw new LabctlError(refused)
          try {
            const out = await canaryScan({ ...tp, token: o.token })
            const vulns = out.kind === 'ok' ? out.vulnerabilities.length : 0
            obs.canary = { success: out.kind === 'ok' && vulns > 0, durationSeconds: 0, vulnerabilities: vulns }
          } finally {
            if (obs.canary) obs.canary.durationSeconds = Math.round(performance.now() - started) / 1000
          }
        },
        t * 4,
      ),
      part('auth', async () => {
        const wrong = `labctl-wrong-${Date.now()}`
        const [none, bad] = await Promise.all([unauthenticatedScanStatus(tp), unauthenticatedScanStatus({ ...tp, token: wrong })])
        obs.auth = { noToken: none.status, wrongToken: bad.status }
      }),
    ]
    if (name === EDGE && publicUrl.protocol === 'https:') {
      parts.push(
        part('tls', async () => {
          const name = publicUrl.hostname.replace(/^\[|\]$/g, '')
          const a = isIP(name) ? undefined : await resolveName(name, inv.dns.servers, inv.dns.timeoutMs)
          const address = a?.status === 'ok' ? a.addresses[0]! : name
          const info = await inspectTls({ address, port: Number(publicUrl.port || 443), servername: name, caFile, timeoutMs: t })
          obs.tls = { expirySeconds: Math.round((info.validTo.getTime() - Date.now()) / 1000), valid: info.authorized && !info.nameError }
        }),
      )
    }
    await Promise.all(parts)
    return obs
  }

  async function sshProbe(name: string, signal: AbortSignal): Promise<SshObservation> {
    const host = o.hosts.find((h) => h.name === name)
    if (!host || !remote) throw new LabctlError(`no SSH access configured for ${name}`, { suggestion: 'run the exporter with SSH probes enabled, for a host of the inventory' })
    const obs: SshObservation = { checks: [], journal: {}, errors: [] }
    const [status, check] = await Promise.allSettled([
      within(o.sshTimeoutMs * 2, signal, hostStatus({ loaded: o.loaded, host, remote, timeoutMs: o.sshTimeoutMs })),
      within(o.sshTimeoutMs * 2, signal, hostCheck({ loaded: o.loaded, host, remote, since: o.journalSince, timeoutMs: o.sshTimeoutMs })),
    ])
    if (status.status === 'fulfilled') {
      obs.unitState = status.value.unit.active
      obs.restarts = status.value.unit.restarts
    } else obs.errors.push(`status: ${say(status.reason)}`)
    if (check.status === 'fulfilled') {
      const m = check.value.metrics
      if (m.diskUsedRatio !== undefined) obs.diskUsedRatio = m.diskUsedRatio
      if (m.cacheBytes !== undefined) obs.cacheBytes = m.cacheBytes
      if (m.dbAgeSeconds !== undefined) obs.dbAgeSeconds = m.dbAgeSeconds
      obs.journal = m.journal
      obs.checks = check.value.checks.map((c) => ({ check: c.check, status: c.status }))
    } else obs.errors.push(`check: ${say(check.reason)}`)
    return obs
  }

  return {
    targets,
    http,
    ssh: sshProbe,
    secrets,
    close: async () => {
      await Promise.allSettled([agent.destroy(), remote?.close()])
    },
  }
}
