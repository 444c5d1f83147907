// `labctl trivy install`, step 2: the plan. Every resource with its current and desired state (secrets
// masked), the token's custody, the firewall's sources; rendered like a diff.
import { existsSync } from 'node:fs'
import { isIP } from 'node:net'
import { dirname, join, posix } from 'node:path'
import { LabctlError, errorMessage } from '../errors.js'
import { inventoryPath, type LoadedInventory } from '../inventory/load.js'
import type { Inventory, ScannerHost } from '../inventory/schema.js'
import { resolveName } from '../net/dns.js'
import { writePrivateFile } from '../private-file.js'
import { envFileToken, generateToken, readTokenFile } from './token.js'
import {
  desiredEnv,
  lineDiff,
  listenPort,
  maskEnv,
  mergeEnv,
  NFT_FILE,
  NFT_TABLE,
  nftRuleset,
  packageSource,
  parseUfwAdded,
  renderUnit,
  ufwKeys,
  unitPath,
  unmanagedKeys,
  type FirewallSpec,
} from './install-render.js'
import { checkSecretsDir } from './rotate.js'
import type { HostState } from './install-state.js'

export const RESOURCES = ['package', 'hold', 'user', 'cache-dir', 'env-file', 'unit', 'firewall', 'service'] as const
export type ResourceId = (typeof RESOURCES)[number]
export type Action = 'none' | 'create' | 'update' | 'skip' | 'refused'
export type Resource = { id: ResourceId; action: Action; current: string; desired: string; diff?: string[]; notes?: string[]; warnings?: string[] }

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
