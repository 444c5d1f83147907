// `labctl trivy install`: provision a scanner host idempotently, plan first. One SSH round trip reads the
// host's state; the plan lists every resource with its current and desired state (secrets masked); apply
// changes only what differs, in an order where a failure leaves nothing half-done (the package is
// downloaded and verified before dpkg sees it; files are written atomically); the end is validate's
// server-side checks. A second run plans no changes.
import { existsSync } from 'node:fs'
import { isIP } from 'node:net'
import { dirname, join, posix } from 'node:path'
import { LabctlError, errorMessage, oneLine } from '../errors.js'
import { inventoryPath, type LoadedInventory } from '../inventory/load.js'
import type { Inventory, ScannerHost } from '../inventory/schema.js'
import { resolveName } from '../net/dns.js'
import { run, writeFile } from '../ssh/index.js'
import { sections } from './remote.js'
import { writePrivateFile } from '../private-file.js'
import { edgeBase, trivyAgent } from './endpoint.js'
import { waitHealthy as waitHttpHealthy } from './health.js'
import { quietTrivyAssignments } from './quiet.js'
import { envFileToken, fingerprint, generateToken, readTokenFile } from './token.js'
import { quoteArg } from '../ssh/quote.js'
import {
  desiredEnv,
  lineDiff,
  listenPort,
  listenProbe,
  maskEnv,
  mergeEnv,
  NFT_FILE,
  NFT_TABLE,
  nftRuleset,
  PACKAGE_SCRIPT,
  packageSource,
  parseUfwAdded,
  renderUnit,
  ufwKeys,
  ufwRules,
  unitPath,
  unmanagedKeys,
  type FirewallSpec,
} from './install-render.js'
import { checkSecretsDir } from './rotate.js'
import { runValidate, type CheckName, type ValidateResult } from './validate.js'

/** What install ends with: validate's checks of the server itself (no DNS/TLS of the edge, no image scan). */
export const SERVER_CHECKS: CheckName[] = ['healthz', 'version', 'db', 'scan', 'auth']

export const RESOURCES = ['package', 'hold', 'user', 'cache-dir', 'env-file', 'unit', 'firewall', 'service'] as const
export type ResourceId = (typeof RESOURCES)[number]
export type Action = 'none' | 'create' | 'update' | 'skip' | 'refused'
export type Resource = { id: ResourceId; action: Action; current: string; desired: string; diff?: string[]; notes?: string[]; warnings?: string[] }

export type HostState = {
  arch?: string
  dpkg?: { want: string; status: string; version: string }
  binaryVersion?: string
  binaryPresent: boolean
  user?: { uid: number; home: string; shell: string }
  userLocked: boolean
  cache?: { owner: string; group: string; mode: number }
  cacheMount?: string
  env?: { owner: string; group: string; mode: number; content: string }
  unit?: string
  enabled: string
  active: string
  ufw?: { status: string; added: string }
  nft?: { loaded: boolean; file?: string }
  firewallPlanOnly?: string
  tools: string[]
}

const STATE_SCRIPT = `
svc=$1; user=$2; cache=$3; envf=$4; unitf=$5; nftf=$6
echo "@@arch"; dpkg --print-architecture 2>/dev/null
echo "@@dpkg"; dpkg-query -W -f='\${db:Status-Want} \${db:Status-Status} \${Version}\\n' trivy 2>/dev/null
echo "@@binary"
if [ -e /usr/bin/trivy ]; then echo present; env ${quietTrivyAssignments().join(' ')} /usr/bin/trivy --version 2>/dev/null | sed -n 's/^Version: //p' | head -n1; fi
echo "@@user"; getent passwd "$user"
echo "@@userstatus"; passwd -S "$user" 2>/dev/null | awk '{print $2}'
echo "@@cache"; stat -c '%U %G %a' "$cache" 2>/dev/null
echo "@@mount"; p=$cache; while [ ! -e "$p" ]; do p=$(dirname "$p"); done; findmnt -n -o TARGET --target "$p" 2>/dev/null || df -P "$p" | awk 'NR==2 {print $6}'
echo "@@envmeta"; stat -c '%U %G %a' "$envf" 2>/dev/null
echo "@@env"; if [ -f "$envf" ]; then base64 -w0 "$envf"; echo; fi
echo "@@unit"; if [ -f "$unitf" ]; then base64 -w0 "$unitf"; echo; fi
echo "@@service"; echo "enabled=$(systemctl is-enabled "$svc" 2>/dev/null)"; echo "active=$(systemctl is-active "$svc" 2>/dev/null)"
echo "@@planonly"; cat /etc/labctl/firewall-plan-only 2>/dev/null
echo "@@ufw"; if command -v ufw >/dev/null 2>&1; then echo present; ufw status 2>/dev/null | head -n1; ufw show added 2>/dev/null; fi
echo "@@nft"; if command -v nft >/dev/null 2>&1; then echo present; if nft list table inet ${NFT_TABLE} >/dev/null 2>&1; then echo loaded; fi; if [ -f "$nftf" ]; then echo "file=$(base64 -w0 "$nftf")"; fi; fi
echo "@@tools"; for t in curl wget sha256sum dpkg apt-mark base64; do command -v "$t" >/dev/null 2>&1 && echo "$t"; done
exit 0
`


const b64 = (s: string | undefined): string | undefined => (s && s.trim() ? Buffer.from(s.trim(), 'base64').toString('utf8') : undefined)

export function parseHostState(text: string): HostState {
  const s = sections(text)
  const get = (k: string): string => (s[k] ?? '').trim()
  const dpkg = /^(\S+) (\S+) (\S+)$/.exec(get('dpkg'))
  const binary = get('binary').split('\n')
  const pw = get('user').split(':')
  const cache = get('cache').split(/\s+/)
  const envMeta = get('envmeta').split(/\s+/)
  const svc = Object.fromEntries(get('service').split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]))
  const ufw = get('ufw').split('\n')
  const nft = get('nft').split('\n')
  const envText = b64(get('env'))
  const state: HostState = {
    binaryPresent: binary[0] === 'present',
    userLocked: get('userstatus') === 'L',
    enabled: svc.enabled ?? '',
    active: svc.active ?? '',
    tools: get('tools').split('\n').filter(Boolean),
  }
  if (get('arch')) state.arch = get('arch')
  if (dpkg) state.dpkg = { want: dpkg[1]!, status: dpkg[2]!, version: dpkg[3]! }
  if (binary[1]?.trim()) state.binaryVersion = binary[1].trim()
  if (pw.length >= 7) state.user = { uid: Number(pw[2]), home: pw[5]!, shell: pw[6]! }
  if (cache.length === 3) state.cache = { owner: cache[0]!, group: cache[1]!, mode: parseInt(cache[2]!, 8) }
  if (get('mount')) state.cacheMount = get('mount').split('\n')[0]!
  if (envMeta.length === 3) state.env = { owner: envMeta[0]!, group: envMeta[1]!, mode: parseInt(envMeta[2]!, 8), content: envText ?? '' }
  const unit = b64(get('unit'))
  if (unit !== undefined) state.unit = unit
  if (get('planonly')) state.firewallPlanOnly = get('planonly').split('\n')[0]!
  if (ufw[0] === 'present') state.ufw = { status: ufw[1] ?? '', added: ufw.slice(2).join('\n') }
  if (nft[0] === 'present') {
    const file = nft.find((l) => l.startsWith('file='))
    state.nft = { loaded: nft.includes('loaded'), ...(file ? { file: b64(file.slice(5)) ?? '' } : {}) }
  }
  return state
}

export async function readHostState(inv: Inventory, host: ScannerHost, timeoutMs: number): Promise<HostState> {
  const t = inv.trivy
  const r = await run(host, ['sh', '-c', STATE_SCRIPT, 'labctl-install-state', t.serviceName, t.serviceUser, t.cacheDir, t.envFile, unitPath(inv), NFT_FILE], {
    sudo: true,
    timeoutMs,
    check: true,
  })
  return parseHostState(r.stdout)
}

// ---------------------------------------------------------------- token custody

export type TokenPlan = { token: string; path: string; generated: boolean; warnings: string[] }

/**
 * The token the host should accept: the secrets dir's (custody, as rotate-token keeps it), or a new one
 * generated here and stored there (0600) before it is sent to the host. A host that already has a token
 * the workstation does not hold is not silently re-keyed.
 */
export function planToken(loaded: LoadedInventory, hostToken: string | undefined): TokenPlan {
  const dir = inventoryPath(loaded, loaded.inventory.secrets.dir)
  const path = join(dir, 'token')
  const warnings: string[] = []
  if (existsSync(path)) {
    let read: { token: string; warnings: string[] }
    try {
      read = readTokenFile(path)
    } catch (err) {
      throw new LabctlError(`${path} does not hold a one-line token: ${err instanceof LabctlError ? err.message : errorMessage(err)}`, {
        code: 'BAD_TOKEN',
        suggestion: `fix ${path} (one line), or run \`labctl trivy rotate-token\``,
      })
    }
    return { token: read.token, path, generated: false, warnings: [...warnings, ...read.warnings] }
  }
  if (hostToken) {
    throw new LabctlError(`the host already has a token in its env file, but ${path} does not exist: installing would replace a token the clients may hold`, {
      code: 'NO_TOKEN',
      suggestion: `put the current token into ${path} (mode 0600), or rotate it with \`labctl trivy rotate-token\``,
    })
  }
  return { token: generateToken(), path, generated: true, warnings }
}

/** Stores a generated token in the secrets dir: private dir, 0600 file, written atomically and synced. */
export async function storeToken(tp: TokenPlan): Promise<void> {
  await checkSecretsDir(dirname(tp.path))
  writePrivateFile(tp.path, `${tp.token}\n`)
}

// ---------------------------------------------------------------- firewall sources

export type FirewallPlan = { spec: FirewallSpec; edge: string[]; warnings: string[] }

/** The listener opens to the HAProxy edge (the public name's addresses, from the lab DNS) and the allowlist. */
export async function firewallSources(inv: Inventory, host: ScannerHost): Promise<FirewallPlan> {
  const warnings: string[] = []
  const name = new URL(inv.trivy.publicUrl).hostname.replace(/^\[|\]$/g, '')
  let edge: string[] = []
  if (isIP(name)) edge = [name]
  else {
    const a = await resolveName(name, inv.dns.servers, inv.dns.timeoutMs).catch((err: unknown) => ({ status: 'error', addresses: [] as string[], detail: errorMessage(err) }))
    if (a.status === 'ok') edge = a.addresses
    else warnings.push(`cannot resolve the HAProxy edge ${name} (${a.detail}): only trivy.allowlist is let in`)
  }
  const sources = [...new Set([...edge, ...inv.trivy.allowlist])]
  return { spec: { port: listenPort(host.listen), sources }, edge, warnings }
}

// ---------------------------------------------------------------- plan

export type PlanContext = { inv: Inventory; host: ScannerHost; token: TokenPlan; upgrade: boolean; firewall: FirewallPlan }

const mode4 = (m: number): string => m.toString(8).padStart(4, '0')
const NOLOGIN = ['/usr/sbin/nologin', '/sbin/nologin']

export function envHeader(inv: Inventory): string {
  return `# trivy-server environment, managed by \`labctl trivy install\` (lab ${inv.name}); root only, 0600.\n# Lines with keys labctl does not manage are kept as they are.\n`
}

export function hostEnvToken(st: HostState): string | undefined {
  return envFileToken(st.env?.content)
}

/** The plan: every resource, what it is and what it should be. Pure: the same state gives the same plan. */
export function computePlan(ctx: PlanContext, st: HostState): Resource[] {
  const { inv, host } = ctx
  const t = inv.trivy
  const u = t.serviceUser
  const pin = t.version
  const out: Resource[] = []

  // Package: exactly the pin, from the release .deb (or the lab's mirror), checksum verified.
  const src = packageSource(inv, st.arch)
  const installed = st.dpkg?.status === 'installed' ? st.dpkg.version : undefined
  const pkgNow = [
    st.dpkg ? `package trivy ${st.dpkg.version}${st.dpkg.status === 'installed' ? '' : ` (${st.dpkg.status})`}` : 'no trivy package',
    st.binaryPresent ? `/usr/bin/trivy reports ${st.binaryVersion ?? 'no version'}` : 'no /usr/bin/trivy',
  ].join(', ')
  const pkgWant = `trivy ${pin} from ${src.url} (sha256 checked against ${posix.basename(src.checksumsUrl)})`
  let pkg: Resource
  if (installed === pin && st.binaryVersion === pin) pkg = { id: 'package', action: 'none', current: pkgNow, desired: `trivy ${pin}` }
  else {
    const drift = [...new Set([installed, st.binaryVersion].filter((v): v is string => Boolean(v) && v !== pin))]
    if (drift.length && !ctx.upgrade) {
      pkg = {
        id: 'package',
        action: 'refused',
        current: pkgNow,
        desired: pkgWant,
        notes: [`version drift: ${pkgNow}, but the inventory pins ${pin}; changing it needs --upgrade`],
      }
    } else pkg = { id: 'package', action: !st.dpkg && !st.binaryPresent ? 'create' : 'update', current: pkgNow, desired: pkgWant, ...(drift.length ? { notes: [`--upgrade: trivy ${drift.join(' / ')} → ${pin}`] } : {}) }
  }
  out.push(pkg)
  const pkgChanges = pkg.action === 'create' || pkg.action === 'update'
  const held = st.dpkg?.want === 'hold'
  out.push({
    id: 'hold',
    action: held ? 'none' : pkg.action === 'refused' ? 'skip' : 'create',
    current: held ? 'held' : 'not held',
    desired: 'held (apt-mark hold trivy: apt never upgrades it out of band)',
    ...(pkgChanges ? { notes: ['the package step holds it again after dpkg -i'] } : {}),
  })

  // The service user: a locked system account without a login shell.
  const userWant = `${u}: system user, locked, shell /usr/sbin/nologin, home ${t.cacheDir}`
  if (!st.user) out.push({ id: 'user', action: 'create', current: 'absent', desired: userWant })
  else {
    const now = `${u}: uid ${st.user.uid}, ${st.userLocked ? 'locked' : 'NOT locked'}, shell ${st.user.shell}, home ${st.user.home}`
    const warnings = st.user.uid >= 1000 ? [`${u} has uid ${st.user.uid}: not a system account; recreate it by hand (userdel ${u}, then rerun)`] : []
    const fix = !st.userLocked || !NOLOGIN.includes(st.user.shell)
    out.push({ id: 'user', action: fix ? 'update' : 'none', current: now, desired: userWant, ...(warnings.length ? { warnings } : {}) })
  }

  // The cache dir, owned by the service user; ideally a filesystem of its own.
  const cacheWant = `${t.cacheDir} ${u}:${u} 0750`
  const mountWarn =
    st.cacheMount && st.cacheMount !== t.cacheDir
      ? [`${t.cacheDir} is not its own mount (it is on ${st.cacheMount}): the DB and scan cache share that filesystem; a dedicated data disk is preferred`]
      : []
  if (!st.cache) out.push({ id: 'cache-dir', action: 'create', current: 'absent', desired: cacheWant, ...(mountWarn.length ? { warnings: mountWarn } : {}) })
  else {
    const c = st.cache
    const ok = c.owner === u && c.group === u && c.mode === 0o750
    out.push({ id: 'cache-dir', action: ok ? 'none' : 'update', current: `${t.cacheDir} ${c.owner}:${c.group} ${mode4(c.mode)}`, desired: cacheWant, ...(mountWarn.length ? { warnings: mountWarn } : {}) })
  }

  // The env file: token and settings, root 0600; only ever shown masked.
  const envText = mergeEnv(st.env?.content, desiredEnv(inv, host, ctx.token.token), envHeader(inv))
  const envWant = `${t.envFile} root:root 0600`
  const kept = unmanagedKeys(envText)
  const envNotes = [
    ...(ctx.token.generated ? [`TRIVY_TOKEN: a new token, generated now and stored in ${ctx.token.path} (0600) before it is sent`] : []),
    ...(kept.length ? [`kept as they are (not managed by labctl): ${kept.join(', ')}`] : []),
  ]
  if (!st.env) {
    out.push({ id: 'env-file', action: 'create', current: 'absent', desired: envWant, diff: lineDiff('', maskEnv(envText)), ...(envNotes.length ? { notes: envNotes } : {}) })
  } else {
    const e = st.env
    const meta = e.owner === 'root' && e.group === 'root' && e.mode === 0o600
    const same = e.content === envText
    const diff = [...(meta ? [] : [`~ owner/mode ${e.owner}:${e.group} ${mode4(e.mode)} → root:root 0600`]), ...lineDiff(maskEnv(e.content), maskEnv(envText))]
    out.push({
      id: 'env-file',
      action: meta && same ? 'none' : 'update',
      current: `${t.envFile} ${e.owner}:${e.group} ${mode4(e.mode)}`,
      desired: envWant,
      ...(diff.length ? { diff } : {}),
      ...(envNotes.length ? { notes: envNotes } : {}),
      ...(meta ? {} : { warnings: [`${t.envFile} is ${e.owner}:${e.group} ${mode4(e.mode)}: the token was readable by others; consider rotating it (\`labctl trivy rotate-token\`)`] }),
    })
  }

  // The hardened unit.
  const unitText = renderUnit(inv)
  const unitFile = unitPath(inv)
  if (st.unit === undefined) out.push({ id: 'unit', action: 'create', current: 'absent', desired: `${unitFile} (hardened: NoNewPrivileges, ProtectSystem=strict, ReadWritePaths=${t.cacheDir}, PrivateTmp, Restart=on-failure, TimeoutStopSec)`, diff: lineDiff('', unitText) })
  else {
    const diff = lineDiff(st.unit, unitText)
    out.push({ id: 'unit', action: diff.length ? 'update' : 'none', current: diff.length ? `${unitFile} differs` : unitFile, desired: unitFile, ...(diff.length ? { diff } : {}) })
  }

  // The firewall: the listener port only for the edge and the allowlist.
  out.push(planFirewall(ctx, st))

  // The service: enabled and running the installed binary with the current settings.
  const changed = out.filter((r) => ['package', 'env-file', 'unit'].includes(r.id) && (r.action === 'create' || r.action === 'update')).map((r) => r.id)
  const enabled = st.enabled === 'enabled'
  const active = st.active === 'active'
  const steps = [...(enabled ? [] : ['enable']), !active ? 'start' : changed.length ? `restart (${changed.join(', ')} changed)` : ''].filter(Boolean)
  out.push({
    id: 'service',
    action: steps.length === 0 ? 'none' : st.unit === undefined ? 'create' : 'update',
    current: st.unit === undefined ? 'no unit' : `${st.enabled || 'unknown'}, ${st.active || 'unknown'}`,
    desired: `${t.serviceName}: enabled, active, /healthz ok${steps.length ? ` (${steps.join(', ')})` : ''}`,
  })
  if (pkg.action === 'refused') for (const r of out) if (r.id !== 'package' && (r.action === 'create' || r.action === 'update')) r.notes = [...(r.notes ?? []), 'not applied: the package step is refused']
  return out
}

function planFirewall(ctx: PlanContext, st: HostState): Resource {
  const { spec, warnings: fwWarnings } = ctx.firewall
  const desired = spec.sources.length ? `port ${spec.port}/tcp open to ${spec.sources.join(', ')} (and loopback), closed to everyone else` : `port ${spec.port}/tcp: no sources known`
  const base = { id: 'firewall' as const, desired }
  if (!spec.sources.length) {
    return { ...base, action: 'skip', current: 'not checked', warnings: [...fwWarnings, `skipped: no addresses to allow (the edge did not resolve and trivy.allowlist is empty); closing port ${spec.port} now would cut HAProxy off`] }
  }
  if (!st.ufw && !st.nft) {
    return { ...base, action: 'skip', current: 'no firewall tool', warnings: [...fwWarnings, `skipped: neither ufw nor nft on the host — restrict port ${spec.port}/tcp to ${spec.sources.join(', ')} by other means`] }
  }
  let res: Resource
  if (st.ufw) {
    const want = ufwKeys(spec)
    const have = parseUfwAdded(st.ufw.added)
    const diff = lineDiff(have.join('\n'), want.join('\n'))
    const inactive = !/Status: active/.test(st.ufw.status)
    res = {
      ...base,
      action: diff.length ? 'update' : 'none',
      current: `ufw (${st.ufw.status || 'status unknown'}): ${have.length ? have.join('; ') : 'no labctl rules'}`,
      desired: `ufw: ${desired}`,
      ...(diff.length ? { diff } : {}),
      ...(inactive ? { warnings: [...fwWarnings, 'ufw is not active: its rules are not enforced (enable it after allowing SSH: `ufw allow OpenSSH && ufw enable`)'] } : fwWarnings.length ? { warnings: fwWarnings } : {}),
    }
  } else {
    const want = nftRuleset(spec)
    const file = st.nft?.file
    const diff = lineDiff(file ?? '', want)
    res = {
      ...base,
      action: diff.length || !st.nft?.loaded ? (file === undefined ? 'create' : 'update') : 'none',
      current: `nftables: ${file === undefined ? `no ${NFT_FILE}` : NFT_FILE}, table inet ${NFT_TABLE} ${st.nft?.loaded ? 'loaded' : 'not loaded'}`,
      desired: `nftables: ${desired} (${NFT_FILE}, table inet ${NFT_TABLE})`,
      ...(diff.length ? { diff } : {}),
      notes: [`to keep it across reboots, include ${NFT_FILE} from /etc/nftables.conf (nftables.service)`],
      ...(fwWarnings.length ? { warnings: fwWarnings } : {}),
    }
  }
  if (st.firewallPlanOnly && res.action !== 'none') {
    return { ...res, action: 'skip', warnings: [...(res.warnings ?? []), `planned only, not applied: ${st.firewallPlanOnly} (/etc/labctl/firewall-plan-only)`] }
  }
  return res
}

const SYMBOL: Record<Action, string> = { none: '=', create: '+', update: '~', skip: '!', refused: 'x' }

export const isChange = (r: Resource): boolean => r.action === 'create' || r.action === 'update'

/** The plan as text, like a diff: "+" create, "~" change, "=" up to date, "!" skipped, "x" refused. */
export function renderPlan(host: ScannerHost, plan: Resource[], opts: { verbose?: boolean } = {}): string[] {
  const lines = [`plan for ${host.name} (${host.fqdn}):`]
  for (const r of plan) {
    const what = r.action === 'none' ? r.current : r.action === 'skip' ? r.desired : `${r.desired}${r.current && r.action !== 'create' ? `   [now: ${r.current}]` : ''}`
    lines.push(`  ${SYMBOL[r.action]} ${r.id.padEnd(10)} ${what}`)
    if (r.diff && (r.action !== 'none' || opts.verbose)) {
      const shown = r.action === 'create' && r.diff.length > 12 && !opts.verbose ? [...r.diff.slice(0, 10), `+ … (${r.diff.length - 10} more lines)`] : r.diff
      for (const d of shown) lines.push(`      ${d}`)
    }
    for (const n of r.notes ?? []) lines.push(`      note: ${n}`)
    for (const w of r.warnings ?? []) lines.push(`      warning: ${w}`)
  }
  const count = (a: Action[]) => plan.filter((r) => a.includes(r.action)).length
  const changes = count(['create', 'update'])
  lines.push(
    `  ${changes === 0 ? 'no changes' : `${changes} to change`}, ${count(['none'])} up to date${count(['skip']) ? `, ${count(['skip'])} skipped` : ''}${count(['refused']) ? `, ${count(['refused'])} REFUSED` : ''}`,
  )
  return lines
}

// ---------------------------------------------------------------- apply

export type AppliedStep = { id: ResourceId; detail: string; durationMs: number }

export type InstallOptions = {
  loaded: LoadedInventory
  upgrade: boolean
  dryRun: boolean
  /** Seconds to wait for /healthz after a (re)start (the first start downloads the DB). */
  waitMs: number
  timeoutMs: number
  progress?: (message: string) => void
  /** Asked after the plan is shown, when there is something to change; false = nothing is applied. */
  confirm?: (host: ScannerHost, plan: Resource[]) => Promise<boolean>
  /** Plan lines as soon as they are known (before the confirmation). */
  onPlan?: (host: ScannerHost, lines: string[]) => void
  signal?: AbortSignal
}

export type HostInstallResult = {
  host: string
  dryRun: boolean
  plan: Resource[]
  changes: number
  applied: AppliedStep[]
  tokenGenerated: boolean
  cancelled?: boolean
  validate?: ValidateResult
  ok: boolean
}

/** Reads the host, plans, (after confirmation) applies, waits for health and runs validate's server checks. */
export async function installHost(host: ScannerHost, o: InstallOptions): Promise<HostInstallResult> {
  const inv = o.loaded.inventory
  const progress = o.progress ?? (() => {})
  progress(`${host.name}: reading the current state over SSH`)
  const [st, fw] = await Promise.all([readHostState(inv, host, o.timeoutMs), firewallSources(inv, host)])
  const token = planToken(o.loaded, hostEnvToken(st))
  const plan = computePlan({ inv, host, token, upgrade: o.upgrade, firewall: fw }, st)
  for (const r of plan) if (r.id === 'env-file') r.warnings = [...(r.warnings ?? []), ...token.warnings]
  o.onPlan?.(host, renderPlan(host, plan))
  const changes = plan.filter(isChange).length
  const base = { host: host.name, plan, changes, applied: [] as AppliedStep[], tokenGenerated: false }
  const refused = plan.find((r) => r.action === 'refused')
  if (o.dryRun) return { ...base, dryRun: true, ok: !refused }
  if (refused) {
    throw new LabctlError(`${host.name}: ${refused.notes?.[0] ?? `${refused.id} refused`}; nothing was changed`, {
      code: 'VERSION_DRIFT',
      suggestion: `rerun with --upgrade to install trivy ${inv.trivy.version} (the pin), or set trivy.version to the installed version`,
    })
  }
  if (changes > 0 && o.confirm && !(await o.confirm(host, plan))) return { ...base, dryRun: false, cancelled: true, ok: false }

  const applied: AppliedStep[] = []
  const t = inv.trivy
  const step = async (id: ResourceId, fn: () => Promise<string>): Promise<void> => {
    if (o.signal?.aborted) throw o.signal.reason
    progress(`${host.name}: ${id}`)
    const started = performance.now()
    let detail: string
    try {
      detail = await fn()
    } catch (err) {
      if (err instanceof LabctlError && err.code.startsWith('INSTALL_')) throw err
      throw new LabctlError(`${host.name}: ${id} step failed: ${oneLine(errorMessage(err), 400)}`, {
        code: 'INSTALL_STEP_FAILED',
        suggestion: `fix the cause and rerun \`labctl trivy install --host ${host.name}\`: the steps already done show as up to date`,
      })
    }
    applied.push({ id, detail, durationMs: Math.round(performance.now() - started) })
  }
  const sh = async (script: string, args: string[], timeoutMs = o.timeoutMs): Promise<string> => {
    const r = await run(host, ['sh', '-c', script, 'labctl-install', ...args], { sudo: true, timeoutMs, check: true, secrets: [token.token], ...(o.signal ? { signal: o.signal } : {}) })
    return r.stdout.trim()
  }
  const res = (id: ResourceId): Resource => plan.find((r) => r.id === id)!

  if (isChange(res('package'))) {
    await step('package', async () => {
      const r = await run(host, ['sh', '-c', PACKAGE_SCRIPT, 'labctl-install-package', packageSource(inv).template, t.version], {
        sudo: true,
        timeoutMs: Math.max(o.timeoutMs, 900_000),
        ...(o.signal ? { signal: o.signal } : {}),
      })
      if (r.code !== 0) {
        const msg = r.stderr.split('\n').find((l) => l.startsWith('labctl-install: '))?.slice('labctl-install: '.length) ?? oneLine(r.stderr || r.stdout || `exit ${r.code}`, 300)
        throw new LabctlError(`${host.name}: installing trivy ${t.version} failed: ${oneLine(msg, 400)}; nothing was installed`, {
          code: 'INSTALL_PACKAGE_FAILED',
          suggestion: `check the package source (trivy.packageUrl, or the GitHub release) and the host's access to it, then rerun \`labctl trivy install --host ${host.name}\``,
        })
      }
      return r.stdout.trim().split('\n').pop() ?? `trivy ${t.version} installed and held`
    })
    if (isChange(res('hold'))) applied.push({ id: 'hold', detail: 'trivy held (apt-mark hold, by the package step)', durationMs: 0 })
  } else if (isChange(res('hold'))) {
    await step('hold', () => sh('if command -v apt-mark >/dev/null 2>&1; then apt-mark hold trivy >/dev/null; else echo "trivy hold" | dpkg --set-selections; fi; echo held', []))
  }
  if (isChange(res('user'))) {
    await step('user', () =>
      sh(
        `u=$1 home=$2
if ! getent passwd "$u" >/dev/null; then useradd --system --user-group --home-dir "$home" --no-create-home --shell /usr/sbin/nologin --comment "Trivy server" "$u"; fi
usermod --shell /usr/sbin/nologin "$u" >/dev/null 2>&1 || usermod --shell /usr/sbin/nologin "$u"
passwd -l "$u" >/dev/null
echo "$u: system user, locked, nologin"`,
        [t.serviceUser, t.cacheDir],
      ),
    )
  }
  if (isChange(res('cache-dir'))) {
    await step('cache-dir', () =>
      sh(
        `set -e
u=$1 d=$2
if [ -d "$d" ] && [ "$(stat -c %U:%G "$d")" != "$u:$u" ]; then chown -R "$u:$u" "$d"; fi
install -d -o "$u" -g "$u" -m 0750 "$d"
chmod 0750 "$d"
echo "$d $u:$u 0750"`,
        [t.serviceUser, t.cacheDir],
      ),
    )
  }
  if (isChange(res('env-file'))) {
    await step('env-file', async () => {
      // Custody first: the token is in the secrets dir before any host accepts it.
      if (token.generated) {
        await storeToken(token)
        base.tokenGenerated = true
      }
      await sh('install -d -m 0755 "$1"', [posix.dirname(t.envFile)])
      const text = mergeEnv(st.env?.content, desiredEnv(inv, host, token.token), envHeader(inv))
      await writeFile(host, t.envFile, text, { mode: 0o600, owner: 'root', group: 'root', sudo: true, keepPrevious: false, timeoutMs: o.timeoutMs })
      return `${t.envFile} root:root 0600 (token ${fingerprint(token.token)})`
    })
  }
  if (isChange(res('unit'))) {
    await step('unit', async () => {
      const file = unitPath(inv)
      await sh('install -d -m 0755 "$1"', [posix.dirname(file)])
      await writeFile(host, file, renderUnit(inv), { mode: 0o644, owner: 'root', group: 'root', sudo: true, keepPrevious: false, timeoutMs: o.timeoutMs })
      await sh('systemctl daemon-reload', [])
      return `${file} written, daemon reloaded`
    })
  }
  const fwRes = res('firewall')
  if (isChange(fwRes)) await step('firewall', () => applyFirewall(host, st, fw.spec, sh))
  const svc = res('service')
  if (isChange(svc)) {
    await step('service', async () => {
      const enabled = st.enabled === 'enabled'
      const changed = plan.filter((r) => ['package', 'env-file', 'unit'].includes(r.id) && isChange(r)).map((r) => r.id)
      const verb = st.active !== 'active' ? 'start' : changed.length ? 'restart' : ''
      await sh(
        `set -e
svc=$1
${enabled ? '' : 'systemctl enable "$svc" >/dev/null 2>&1'}
${verb ? `systemctl ${verb} "$svc"` : ''}`,
        [t.serviceName],
      )
      const waited = await waitHealthy(host, inv, o)
      const did = [enabled ? '' : 'enabled', verb === 'start' ? 'started' : verb === 'restart' ? `restarted (${changed.join(', ')} changed)` : ''].filter(Boolean).join(', ')
      return `${t.serviceName} ${did}; /healthz ok after ${(waited / 1000).toFixed(1)} s`
    })
  }

  // The edge notices a (re)started backend within a health-check round or two.
  if (isChange(svc)) await waitEdge(o.loaded, 20_000)
  progress(`${host.name}: validating (${SERVER_CHECKS.join(', ')})`)
  const validate = await runValidate({ loaded: o.loaded, hosts: [host], only: SERVER_CHECKS, tokenFile: token.path, timeoutMs: 10_000, scanTimeoutMs: 60_000 })
  return { ...base, dryRun: false, applied, validate, ok: validate.ok }
}

/** The ufw script: labctl's own rules out, then the allows before the deny (ufw matches in order); every word quoted. */
export function ufwApplyScript(added: string, spec: FirewallSpec): string {
  const ours = added.split('\n').filter((l) => l.includes("comment 'labctl-trivy'")).map((l) => l.trim().replace(/^ufw\s+/, ''))
  return [
    'set -e',
    ...ours.map((r) => `ufw --force delete ${r.replace(/ comment '[^']*'$/, '')} >/dev/null`),
    ...ufwRules(spec).map((r) => `ufw ${r.map(quoteArg).join(' ')} >/dev/null`),
    'echo done',
  ].join('\n')
}

async function applyFirewall(host: ScannerHost, st: HostState, spec: FirewallSpec, sh: (script: string, args: string[]) => Promise<string>): Promise<string> {
  if (st.firewallPlanOnly) return `planned only: ${st.firewallPlanOnly}`
  if (st.ufw) {
    await sh(ufwApplyScript(st.ufw.added, spec), [])
    return `ufw: port ${spec.port}/tcp allowed from ${spec.sources.join(', ')}, denied otherwise`
  }
  await sh('install -d -m 0755 "$(dirname "$1")"', [NFT_FILE])
  await writeFile(host, NFT_FILE, nftRuleset(spec), { mode: 0o644, owner: 'root', group: 'root', sudo: true, keepPrevious: false })
  await sh('nft -f "$1"', [NFT_FILE])
  return `nftables: table inet ${NFT_TABLE} loaded from ${NFT_FILE}`
}

const HEALTH_SCRIPT = `addr=$1; secs=$2; svc=$3
end=$(( $(date +%s) + secs ))
last=""
while :; do
  if command -v curl >/dev/null 2>&1; then last=$(curl -fsS --max-time 3 "http://$addr/healthz" 2>&1)
  else last=$(wget -q -T 3 -O - "http://$addr/healthz" 2>&1); fi
  [ "$last" = ok ] && exit 0
  if [ "$(systemctl is-active "$svc" 2>/dev/null)" = failed ]; then echo "the service failed"; journalctl -u "$svc" -n 4 --no-pager -o cat 2>/dev/null | tail -n 4; exit 2; fi
  if [ "$(date +%s)" -ge "$end" ]; then echo "$last"; journalctl -u "$svc" -n 4 --no-pager -o cat 2>/dev/null | tail -n 4; exit 1; fi
  sleep 0.3
done`

/** Polls /healthz on the host itself (one SSH command): the first start downloads the DB first. */
async function waitHealthy(host: ScannerHost, inv: Inventory, o: InstallOptions): Promise<number> {
  const started = Date.now()
  const secs = Math.max(1, Math.round(o.waitMs / 1000))
  const r = await run(host, ['sh', '-c', HEALTH_SCRIPT, 'labctl-health', listenProbe(host.listen), String(secs), inv.trivy.serviceName], {
    sudo: true,
    timeoutMs: o.waitMs + 30_000,
    ...(o.signal ? { signal: o.signal } : {}),
  })
  if (r.code !== 0) {
    throw new LabctlError(`${host.name}: ${inv.trivy.serviceName} did not answer /healthz on ${listenProbe(host.listen)} ${r.code === 2 ? '(it failed)' : `within ${secs} s`}: ${oneLine(r.stdout || r.stderr, 400)}`, {
      code: 'INSTALL_UNHEALTHY',
      suggestion: `read its log: \`labctl trivy logs --host ${host.name} -n 50\`; fix and rerun \`labctl trivy install\``,
    })
  }
  return Date.now() - started
}

async function waitEdge(loaded: LoadedInventory, timeoutMs: number): Promise<void> {
  const agent = trivyAgent(loaded, { connectTimeoutMs: 2000 })
  try {
    // Best effort: validate's checks that follow say what is wrong if the edge still does not answer.
    await waitHttpHealthy({ bases: [edgeBase(loaded.inventory)], dispatcher: agent, waitMs: timeoutMs, intervalMs: 250 })
  } finally {
    await agent.close()
  }
}
