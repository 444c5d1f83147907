// `labctl trivy install`: provision a scanner host idempotently, plan first. One SSH round trip reads the
// host's state; the plan lists every resource with its current and desired state (secrets masked); apply
// changes only what differs, in an order where a failure leaves nothing half-done (the package is
// downloaded and verified before dpkg sees it; files are written atomically); the end is validate's
// server-side checks. A second run plans no changes.
// This file applies the plan (install-state.ts reads the host, install-plan.ts plans).
import { posix } from 'node:path'
import { LabctlError, errorMessage, oneLine } from '../errors.js'
import type { LoadedInventory } from '../inventory/load.js'
import type { Inventory, ScannerHost } from '../inventory/schema.js'
import type { Remote } from '../ssh/index.js'
import { edgeBase, trivyAgent } from './endpoint.js'
import { waitHealthy as waitHttpHealthy } from './health.js'
import { fingerprint } from './token.js'
import { quoteArg } from '../ssh/quote.js'
import {
  desiredEnv,
  listenProbe,
  mergeEnv,
  NFT_FILE,
  NFT_TABLE,
  nftRuleset,
  PACKAGE_SCRIPT,
  packageSource,
  renderUnit,
  ufwRules,
  unitPath,
  type FirewallSpec,
} from './install-render.js'
import { runValidate, type CheckName, type ValidateResult } from './validate.js'
import { readHostState, type HostState } from './install-state.js'
import {
  computePlan,
  envHeader,
  firewallSources,
  hostEnvToken,
  isChange,
  planToken,
  renderPlan,
  storeToken,
  type Resource,
  type ResourceId,
} from './install-plan.js'

/** What install ends with: validate's checks of the server itself (no DNS/TLS of the edge, no image scan). */
export const SERVER_CHECKS: CheckName[] = ['healthz', 'version', 'db', 'scan', 'auth']

// ---------------------------------------------------------------- apply

export type AppliedStep = { id: ResourceId; detail: string; durationMs: number }

export type InstallOptions = {
  loaded: LoadedInventory
  host: ScannerHost
  /** The run's SSH session. */
  remote: Remote
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
  signal?: AbortSignal | undefined
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
export async function installHost(o: InstallOptions): Promise<HostInstallResult> {
  const { host, remote } = o
  const inv = o.loaded.inventory
  const progress = o.progress ?? (() => {})
  progress(`${host.name}: reading the current state over SSH`)
  const [st, fw] = await Promise.all([readHostState({ inv, host, remote, timeoutMs: o.timeoutMs }), firewallSources(inv, host)])
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
    const r = await remote.run(host, ['sh', '-c', script, 'labctl-install', ...args], { sudo: true, timeoutMs, check: true, secrets: [token.token], ...(o.signal ? { signal: o.signal } : {}) })
    return r.stdout.trim()
  }
  const res = (id: ResourceId): Resource => plan.find((r) => r.id === id)!

  if (isChange(res('package'))) {
    await step('package', async () => {
      const r = await remote.run(host, ['sh', '-c', PACKAGE_SCRIPT, 'labctl-install-package', packageSource(inv).template, t.version], {
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
      await remote.writeFile(host, t.envFile, text, { mode: 0o600, owner: 'root', group: 'root', sudo: true, keepPrevious: false, timeoutMs: o.timeoutMs })
      return `${t.envFile} root:root 0600 (token ${fingerprint(token.token)})`
    })
  }
  if (isChange(res('unit'))) {
    await step('unit', async () => {
      const file = unitPath(inv)
      await sh('install -d -m 0755 "$1"', [posix.dirname(file)])
      await remote.writeFile(host, file, renderUnit(inv), { mode: 0o644, owner: 'root', group: 'root', sudo: true, keepPrevious: false, timeoutMs: o.timeoutMs })
      await sh('systemctl daemon-reload', [])
      return `${file} written, daemon reloaded`
    })
  }
  const fwRes = res('firewall')
  if (isChange(fwRes)) await step('firewall', () => applyFirewall(remote, host, st, fw.spec, sh))
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

async function applyFirewall(remote: Remote, host: ScannerHost, st: HostState, spec: FirewallSpec, sh: (script: string, args: string[]) => Promise<string>): Promise<string> {
  if (st.firewallPlanOnly) return `planned only: ${st.firewallPlanOnly}`
  if (st.ufw) {
    await sh(ufwApplyScript(st.ufw.added, spec), [])
    return `ufw: port ${spec.port}/tcp allowed from ${spec.sources.join(', ')}, denied otherwise`
  }
  await sh('install -d -m 0755 "$(dirname "$1")"', [NFT_FILE])
  await remote.writeFile(host, NFT_FILE, nftRuleset(spec), { mode: 0o644, owner: 'root', group: 'root', sudo: true, keepPrevious: false })
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
  const r = await o.remote.run(host, ['sh', '-c', HEALTH_SCRIPT, 'labctl-health', listenProbe(host.listen), String(secs), inv.trivy.serviceName], {
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
