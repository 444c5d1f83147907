import type { Dispatcher } from 'undici'
import semver from 'semver'
import { LabctlError } from '../errors.js'
import { inventoryPath, type LoadedInventory } from '../inventory/load.js'
import type { Inventory, ScannerHost } from '../inventory/schema.js'
import { resolveName } from '../net/dns.js'
import { plainHttpRefusal } from '../net/plain-http.js'
import { describeNetError } from '../net/http.js'
import { redactJson, redactText } from '../redact.js'
import { fail, pass, runCheck, skip, summarize, warn, type CheckResult, type CheckSpec } from '../checks/types.js'
import { CANARY, HttpAnswerError, canaryScan, getHealthz, getVersion, describeAnswer, unauthenticatedScanStatus, type ServerVersion } from './api.js'
import { clientVersion, findTrivyClient, scanImage, SEVERITIES } from './client.js'
import { inspectTls } from './tls-check.js'
import { loadToken } from './token.js'
import { dbAge, futureDbProblem } from './freshness.js'
import { directBase, trivyAgent, trivyCaFile } from './endpoint.js'
import { cacheCheckApplies, fleetChecks, FLEET_CHECK_NAMES } from './fleet-checks.js'
import type { Edge } from '../edge/index.js'
import { loadRedisPassword, usesRedis } from '../redis/secret.js'
import { readBounded } from '../fs/read-bounded.js'

export const CHECK_NAMES = ['dns', 'tls', 'healthz', 'version', 'db', 'scan', 'auth', 'image', ...FLEET_CHECK_NAMES] as const
export type CheckName = (typeof CHECK_NAMES)[number]

export type ValidateOptions = {
  loaded: LoadedInventory
  hosts: ScannerHost[]
  only?: CheckName[]
  skip?: CheckName[]
  tokenFile?: string | undefined
  image?: string | undefined
  /** Severities that fail the image gate (default HIGH, CRITICAL). */
  gate?: string[]
  insecure?: boolean
  timeoutMs?: number
  scanTimeoutMs?: number
  env?: NodeJS.ProcessEnv
  readStdin?: () => string
  /** Called once with the planned checks, before any runs (a live view). */
  onStart?: ((specs: CheckSpec[]) => void) | undefined
  /** The edge's runtime API (from the inventory's `edge:` section, over the session's SSH): the fleet's edge checks. */
  edge?: Edge | undefined
  /** Called with each result as it completes (INDEX into the planned checks). */
  onResult?: ((r: CheckResult, index: number) => void) | undefined
}

export type ValidateResult = {
  lab: string
  ok: boolean
  summary: { pass: number; warn: number; fail: number; skip: number }
  checks: CheckResult[]
  warnings: string[]
  /** Some scanner hosts failed while the edge still serves from the others (the failing hosts are named in `degradedHosts`). */
  degraded?: boolean
  degradedHosts?: string[]
}

const RUNBOOK = (name: string) => `labctl runbook run ${name}`

/** The checks to run, as specs with their own deadlines. Started together by runValidate. */
export function planChecks(opts: ValidateOptions): {
  specs: CheckSpec[]
  cleanup: () => Promise<void>
  warnings: string[]
  describeError: (err: unknown, timeoutMs: number) => string
  /** A result as it may be shown: everything a peer may have echoed is passed through the one redactor. */
  redactResult: (r: CheckResult) => CheckResult
} {
  const inv: Inventory = opts.loaded.inventory
  const env = opts.env ?? process.env
  const timeoutMs = opts.timeoutMs ?? 10_000
  const scanTimeoutMs = opts.scanTimeoutMs ?? 60_000
  const dnsServers = inv.dns.servers
  const caFile = trivyCaFile(opts.loaded)
  // The TCP connect gives up before the check's deadline, so a host that never answers a SYN (down, cut off,
  // filtered) is told apart from a server that accepts and never replies (hung).
  const agent = trivyAgent(opts.loaded, { connectTimeoutMs: Math.max(300, Math.floor((timeoutMs * 2) / 3)) })
  const publicUrl = new URL(inv.trivy.publicUrl)
  const wanted = (c: CheckName): boolean => (!opts.only?.length || opts.only.includes(c)) && !opts.skip?.includes(c)
  const warnings: string[] = []
  const specs: CheckSpec[] = []
  const cleanups: Array<() => Promise<void>> = [() => agent.close()]

  // The token is needed only by the scan, auth and image checks; loaded once, never printed.
  let token: string | undefined
  if (wanted('scan') || wanted('auth') || (wanted('image') && opts.image) || (wanted('cache') && cacheCheckApplies(inv, opts.hosts))) {
    const src = loadToken({ tokenFile: opts.tokenFile, secretsDir: inventoryPath(opts.loaded, inv.secrets.dir), env, ...(opts.readStdin ? { readStdin: opts.readStdin } : {}) })
    token = src.token
    warnings.push(...src.warnings)
  }

  // Plain HTTP carries the token in clear: only to loopback or trivy.plainHttpNetworks, unless --insecure.
  const tokenAllowed = (url: URL): Promise<string | undefined> =>
    plainHttpRefusal(url, { insecure: opts.insecure, networks: inv.trivy.plainHttpNetworks, dnsServers, dnsTimeoutMs: inv.dns.timeoutMs })

  // One /version fetch per base URL, shared by the version and db checks.
  const versions = new Map<string, Promise<ServerVersion>>()
  const versionOf = (base: string): Promise<ServerVersion> => {
    if (!versions.has(base)) versions.set(base, getVersion(base, { dispatcher: agent, timeoutMs }))
    return versions.get(base)!
  }
  const localClient = findTrivyClient(env)
  const localVersion = localClient ? clientVersion(localClient).catch(() => undefined) : Promise.resolve(undefined)

  // How a check that threw is reported: our own messages as they are, network errors described, and
  // the token redacted from anything a peer may have echoed.
  const describeError = (err: unknown, timeoutMs: number): string => {
    if (err instanceof HttpAnswerError || err instanceof LabctlError) return redactText(err.message, [token])
    return redactText(describeNetError(err, timeoutMs), [token])
  }
  // Every field of every result, whatever check made it (a scan answer's vulnerability IDs, a title, a
  // version string): the token is replaced before anything reaches text, --json or JUnit.
  const redisPassword = (wanted('redis') || wanted('cache')) && usesRedis(inv) ? loadRedisPassword(opts.loaded) : undefined
  const redactResult = (r: CheckResult): CheckResult => redactJson(r, [token, redisPassword])
  const edgeFix = `check the HAProxy edge and the public name: \`labctl trivy validate --only dns,tls\`, then \`labctl trivy status\``
  const hostFix = (h: string) => `check the service on ${h}: \`labctl trivy status --host ${h}\` (or \`labctl runbook run scan-hangs\`)`
  const add = (s: Omit<CheckSpec, 'timeoutMs'> & { timeoutMs?: number }): void => {
    specs.push({ timeoutMs, fix: s.host === 'edge' ? edgeFix : hostFix(s.host), ...s })
  }

  // DNS: every configured name, asked of the lab's DNS servers.
  if (wanted('dns')) {
    const names: Array<{ name: string; host: string; expect?: string | undefined }> = []
    for (const h of opts.hosts) {
      names.push({ name: h.fqdn, host: h.name, expect: h.address })
      for (const a of h.aliases) names.push({ name: a, host: h.name, expect: h.address })
    }
    names.push({ name: publicUrl.hostname, host: 'edge' })
    for (const n of names) {
      add({
        check: 'dns',
        name: `dns ${n.name}`,
        host: n.host,
        timeoutMs: inv.dns.timeoutMs * (dnsServers.length + 1) * 3,
        run: async () => {
          // Every server is asked at once; one that gives no usable answer is a warning naming it.
          const a = await resolveName(n.name, dnsServers, inv.dns.timeoutMs, { waitAll: true })
          const fixDns = `check the record for ${n.name} on ${dnsServers.join(', ')}, or run \`${RUNBOOK('dns-record-wrong')}\``
          const others = a.warnings?.length ? `; ${a.warnings.join('; ')}` : ''
          switch (a.status) {
            case 'ok':
              if (n.expect && !a.addresses.includes(n.expect)) return fail(`${n.name} resolves to ${a.addresses.join(', ')}, expected ${n.expect}${others}`, fixDns)
              if (others) return warn(`${a.detail} (from ${a.server})${others}`, `check the DNS servers named above, or remove them from dns.servers`)
              return pass(a.detail)
            case 'mismatch':
              return fail(`DNS answer does not match the question: ${a.detail}${others}`, `check the DNS server ${a.server}: something answers with records for other names or other queries (a misconfigured forwarder or a spoofer)`)
            case 'nxdomain':
              return fail(`${n.name} does not exist (NXDOMAIN)`, fixDns)
            case 'nodata':
              return fail(`${n.name} exists but has no A/AAAA record`, fixDns)
            case 'servfail':
              return fail(`DNS server failure (SERVFAIL) for ${n.name}: ${a.detail}`, `check the DNS server ${a.server} (its upstreams and zone)`)
            case 'refused':
              return fail(`DNS server refused the query for ${n.name}: ${a.detail}`, `check that ${a.server} serves the lab zone to this machine`)
            case 'timeout':
              return fail(`DNS timeout: ${a.detail}${others}`, `check that the lab DNS server ${dnsServers.join(', ')} is up and reachable`)
            default:
              return fail(a.detail, `check dns.servers in the inventory`)
          }
        },
      })
    }
  }

  // TLS on the public URL.
  if (wanted('tls')) {
    add({
      check: 'tls',
      name: `tls ${publicUrl.host}`,
      host: 'edge',
      run: async () => {
        if (publicUrl.protocol !== 'https:') return fail(`public URL ${publicUrl.origin} is not https`, 'set trivy.publicUrl to the https:// URL served by HAProxy')
        const a = await resolveName(publicUrl.hostname, dnsServers, inv.dns.timeoutMs)
        const address = a.status === 'ok' ? a.addresses[0]! : publicUrl.hostname
        const port = Number(publicUrl.port || 443)
        const t = await inspectTls({ address, port, servername: publicUrl.hostname, caFile, timeoutMs: Math.max(300, Math.floor((timeoutMs * 2) / 3)) })
        const when = t.validTo.toISOString().slice(0, 10)
        const renew = `renew the certificate on the HAProxy edge, or run \`${RUNBOOK('tls-cert-expiry')}\``
        if (t.authorizationError === 'CERT_HAS_EXPIRED' || t.daysLeft < 0) return fail(`certificate for ${t.subject} expired on ${when}`, renew)
        if (t.authorizationError === 'CERT_NOT_YET_VALID') return fail(`certificate for ${t.subject} is not valid before ${t.validFrom.toISOString()}`, 'check the edge clock and certificate')
        if (t.nameError || t.authorizationError === 'ERR_TLS_CERT_ALTNAME_INVALID') {
          return fail(`certificate does not cover ${publicUrl.hostname} (it is for ${t.altNames || t.subject})`, `install a certificate for ${publicUrl.hostname} on the HAProxy edge`)
        }
        if (!t.authorized) {
          return fail(`certificate chain does not verify (${t.authorizationError}); issuer "${t.issuer}"`, caFile ? `check that ${caFile} holds the issuing CA` : 'set trivy.caBundle to the lab CA, or install the CA in the system store')
        }
        const detail = `chain verifies, name matches, expires ${when} (${t.daysLeft} days)`
        if (t.daysLeft < inv.thresholds.certCritDays) return fail(`${detail}: below ${inv.thresholds.certCritDays} days`, renew)
        if (t.daysLeft < inv.thresholds.certWarnDays) return warn(`${detail}: below ${inv.thresholds.certWarnDays} days`, renew)
        return pass(detail)
      },
    })
  }

  // /healthz through HAProxy and directly.
  const endpoints: Array<{ base: string; host: string; label: string }> = [{ base: publicUrl.origin, host: 'edge', label: 'via HAProxy' }]
  for (const h of opts.hosts) {
    const direct = directBase(h)
    if (direct) endpoints.push({ base: direct, host: h.name, label: 'direct' })
  }
  if (wanted('healthz')) {
    for (const e of endpoints) {
      add({
        check: 'healthz',
        name: `healthz ${e.label}`,
        host: e.host,
        run: async () => {
          const res = await getHealthz(e.base, { dispatcher: agent, timeoutMs })
          if (res.status === 200 && res.body.trim() === 'ok') return pass(`${e.base}/healthz: ok (${Math.round(res.durationMs)} ms)`)
          const down = e.host === 'edge' ? `check the Trivy service behind HAProxy: \`labctl trivy status\`, or \`${RUNBOOK('scan-hangs')}\`` : `check the service on ${e.host}: \`labctl trivy status --host ${e.host}\``
          return fail(describeAnswer(res), down)
        },
      })
    }
  }

  // /version: version pin, local client, and the DB's presence and freshness. Per host when a direct
  // URL is known, else through the edge.
  const versionTargets = endpoints.length > 1 ? endpoints.slice(1) : endpoints
  for (const e of versionTargets) {
    if (wanted('version')) {
      add({
        check: 'version',
        name: `version ${e.host}`,
        host: e.host,
        run: async () => {
          const v = await versionOf(e.base)
          const pin = inv.trivy.version
          const server = v.Version.replace(/^v/, '')
          const fixPin = `reinstall the pinned version: \`labctl trivy install --upgrade\`, or run \`${RUNBOOK('version-drift')}\``
          if (!semver.valid(server) || !semver.eq(server, pin)) return fail(`server runs Trivy ${v.Version}, the inventory pins ${pin}`, fixPin)
          const local = await localVersion
          if (local && semver.valid(local) && !semver.eq(local, pin)) {
            return warn(`server ${server} matches the pin, but the local trivy client is ${local}`, `install trivy ${pin} locally: client and server API change between releases`)
          }
          return pass(`server ${server} = pin${local ? `, local client ${local}` : ''}`)
        },
      })
    }
    if (wanted('db')) {
      add({
        check: 'db',
        name: `db ${e.host}`,
        host: e.host,
        run: async () => {
          const v = await versionOf(e.base)
          const db = v.VulnerabilityDB
          if (!db) return fail('server has no vulnerability DB (/version shows no VulnerabilityDB)', `reset the DB: \`labctl trivy reset-db --host ${e.host}\`, or run \`${RUNBOOK('db-stale')}\``)
          const age = dbAge(db.UpdatedAt, inv.thresholds.dbFreshnessHours)
          if (age.kind === 'unknown') return fail(`unreadable UpdatedAt "${db.UpdatedAt}"`, 'reset the DB')
          const detail = `UpdatedAt ${db.UpdatedAt} (${age.hours.toFixed(1)} h ago), NextUpdate ${db.NextUpdate ?? '-'}, DownloadedAt ${db.DownloadedAt ?? '-'}`
          if (age.kind === 'future') {
            const f = futureDbProblem(db.UpdatedAt, age.hours)
            return fail(f.message, f.suggestion)
          }
          if (age.kind === 'stale') {
            return fail(`DB is stale: ${detail}; SLA ${inv.thresholds.dbFreshnessHours} h`, `check the server's DB updates (mirror reachable?) and run \`${RUNBOOK('db-stale')}\``)
          }
          return pass(detail)
        },
      })
    }
  }

  // The canary scan and the auth probes, through the edge and directly on each host.
  for (const e of endpoints) {
    const url = new URL(e.base)
    if (wanted('scan')) {
      add({
        check: 'scan',
        name: `scan canary ${e.label}`,
        host: e.host,
        timeoutMs: scanTimeoutMs,
        run: async () => {
          const refused = await tokenAllowed(url)
          if (refused) return skip(`${refused}; pass --insecure to allow it`)
          const out = await canaryScan({ baseUrl: e.base, token, tokenHeader: inv.trivy.tokenHeader, dispatcher: agent as Dispatcher, timeoutMs: scanTimeoutMs })
          if (out.kind === 'unauthorized') {
            return fail('token rejected (401): the server does not accept the token labctl holds', `check ${inventoryPath(opts.loaded, inv.secrets.dir)}/token against the server's EnvironmentFile, or run \`${RUNBOOK('scan-401')}\``)
          }
          if (out.kind === 'error') {
            const fix = out.status >= 500 && out.status !== 503 ? `restart the service or reset the DB: \`${RUNBOOK('scan-500')}\`` : `check the Trivy service: \`labctl trivy status\``
            return fail(`canary scan failed: ${out.detail}`, fix)
          }
          if (out.vulnerabilities.length === 0) {
            return fail(`token accepted, but the DB reports nothing for ${CANARY.pkg.name} ${CANARY.pkg.version} on alpine ${CANARY.os.name}: the DB is empty or wrong`, `reset the DB: \`labctl trivy reset-db\``)
          }
          const ids = out.vulnerabilities.map((v) => `${v.id} ${v.severity}`).join(', ')
          return pass(`token accepted; DB reports ${out.vulnerabilities.length} for canary ${CANARY.pkg.name} ${CANARY.pkg.version} (${ids})`)
        },
      })
    }
    if (wanted('auth')) {
      add({
        check: 'auth',
        name: `auth ${e.label}`,
        host: e.host,
        run: async () => {
          const wrong = `labctl-wrong-${Date.now()}`
          const [none, bad] = await Promise.all([
            unauthenticatedScanStatus({ baseUrl: e.base, tokenHeader: inv.trivy.tokenHeader, dispatcher: agent as Dispatcher, timeoutMs }),
            unauthenticatedScanStatus({ baseUrl: e.base, token: wrong, tokenHeader: inv.trivy.tokenHeader, dispatcher: agent as Dispatcher, timeoutMs }),
          ])
          if (none.status === 401 && bad.status === 401) return pass('no token → 401, wrong token → 401')
          const open = [none.status !== 401 ? `without a token: ${none.detail}` : '', bad.status !== 401 ? `with a wrong token: ${bad.detail}` : ''].filter(Boolean).join('; ')
          const isOpen = none.status === 200 || bad.status === 200
          return fail(
            `${isOpen ? 'scanner is OPEN: ' : 'expected 401 '}${open}`,
            isOpen ? `set TRIVY_TOKEN in the server's EnvironmentFile and restart it (\`labctl trivy rotate-token\`)` : 'check the service behind the edge',
          )
        },
      })
    }
  }

  // A real image scan with the local trivy client.
  if (opts.image && wanted('image')) {
    const gate = (opts.gate ?? ['HIGH', 'CRITICAL']).map((s) => s.toUpperCase())
    add({
      check: 'image',
      name: `image ${opts.image}`,
      host: 'edge',
      timeoutMs: scanTimeoutMs + 10_000,
      run: async (signal) => {
        if (!localClient) throw new LabctlError('no local trivy client (install trivy or set LABCTL_TRIVY_BIN)')
        // Loaded only for --image: an ESM import of node:http also loads Node's bundled undici (~25 ms).
        const { startConnectProxy } = await import('../net/connect-proxy.js')
        const proxy = await startConnectProxy({ dnsServers, dnsTimeoutMs: inv.dns.timeoutMs })
        try {
          const r = await scanImage({ bin: localClient, serverUrl: publicUrl.origin, image: opts.image!, token: token!, tokenHeader: inv.trivy.tokenHeader, caFile, proxyUrl: proxy.url, timeoutMs: scanTimeoutMs, signal })
          if (!r.ok) return fail(`trivy image failed: ${r.detail}`, r.unauthorized ? `run \`${RUNBOOK('scan-401')}\`` : 'rerun with the same trivy command by hand to see its full log')
          const summary = SEVERITIES.map((s) => `${s} ${r.counts[s]}`).join(', ')
          const gated = gate.reduce((n, s) => n + (r.counts[s as keyof typeof r.counts] ?? 0), 0)
          if (gated > 0) return fail(`${summary}; gate ${gate.join(',')} has ${gated} finding${gated === 1 ? '' : 's'}`, `fix or route the findings through the exception path (\`${RUNBOOK('high-critical-new-image')}\`)`)
          return pass(`${summary}; gate ${gate.join(',')} clean`)
        } finally {
          await proxy.close()
        }
      },
    })
  }

  // The fleet: a shared scan cache, its Redis, the edge's view of every host (src/trivy/fleet-checks.ts).
  const fleet = fleetChecks({
    inv,
    hosts: opts.hosts,
    wanted,
    dispatcher: agent as Dispatcher,
    timeoutMs,
    token,
    tokenRefused: tokenAllowed,
    redisPassword,
    redisCa: caFile && /^rediss:/i.test(inv.trivy.cacheBackend) ? readBounded(caFile, 'ca-bundle').toString('utf8') : undefined,
    edge: opts.edge,
  })
  for (const s of fleet.specs) specs.push({ ...s, timeoutMs: s.timeoutMs })
  cleanups.unshift(fleet.cleanup)

  return { specs, warnings, describeError, redactResult, cleanup: async () => void (await Promise.all(cleanups.map((c) => c().catch(() => undefined)))) }
}

export { summarize }

/** Runs every planned check concurrently; `onResult` sees each as it completes. */
export async function runValidate(opts: ValidateOptions): Promise<ValidateResult> {
  const plan = planChecks(opts)
  opts.onStart?.(plan.specs)
  try {
    const checks = await Promise.all(
      plan.specs.map(async (spec, i) => {
        const r = plan.redactResult(await runCheck(spec, (err) => plan.describeError(err, spec.timeoutMs)))
        opts.onResult?.(r, i)
        return r
      }),
    )
    const summary = summarize(checks)
    return { lab: opts.loaded.inventory.name, ok: summary.fail === 0, summary, checks, warnings: plan.warnings, ...degradation(checks, opts.hosts) }
  } finally {
    await plan.cleanup()
  }
}

/**
 * "Degraded": checks failed only on scanner hosts, while the edge answered (its /healthz passed, or its
 * backend has a server UP): the lab still scans, from the other hosts. Still exit 3, with the hosts named.
 */
export function degradation(checks: readonly CheckResult[], hosts: readonly ScannerHost[]): { degraded?: boolean; degradedHosts?: string[] } {
  const failed = checks.filter((c) => c.status === 'fail')
  if (failed.length === 0 || hosts.length < 2) return {}
  const names = new Set(hosts.map((h) => h.name))
  if (!failed.every((c) => names.has(c.host))) return {}
  const edgeServes = checks.some((c) => c.host === 'edge' && (c.check === 'healthz' || c.check === 'edge') && c.status !== 'fail')
  if (!edgeServes) return {}
  const down = [...new Set(failed.map((c) => c.host))]
  if (down.length >= names.size) return {}
  return { degraded: true, degradedHosts: down }
}
