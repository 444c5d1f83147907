// `trivy check`'s firewall reading: the listener rule live on the host (ufw's labctl rules, or the loaded
// nftables table) compared with what the inventory wants (the edge's addresses + trivy.allowlist, the
// same sources `trivy install` writes), naming the sources that are missing or extra.
import { fail, pass, skip, warn, type CheckStatus } from '../checks/types.js'
import { NFT_TABLE, UFW_COMMENT, parseUfwAdded } from './install-render.js'
import type { FirewallPlan } from './install-plan.js'

/** The shell lines that read the live rule (run with sudo, inside check's one SSH command); they exit 0. */
export const FIREWALL_SCRIPT = `echo "@@fwplanonly"; cat /etc/labctl/firewall-plan-only 2>/dev/null
echo "@@ufw"; if command -v ufw >/dev/null 2>&1; then echo present; ufw status 2>/dev/null | head -n1; ufw show added 2>/dev/null; fi
echo "@@nft"; if command -v nft >/dev/null 2>&1; then echo present; nft list table inet ${NFT_TABLE} 2>/dev/null || true; fi
true`

type Verdict = { status: CheckStatus; detail: string; fix?: string }

export type LiveFirewall = { planOnly?: string; ufw?: string; nft?: string }

/** The sources a loaded labctl nftables table lets through to `port`, and whether it drops the rest. */
export function parseNftTable(text: string, port: number): { sources: string[]; drops: boolean } {
  const sources: string[] = []
  let drops = false
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    const m = /^ip6? saddr (?:\{([^}]*)\}|(\S+)) tcp dport (\d+) accept$/.exec(line)
    if (m && Number(m[3]) === port) sources.push(...(m[1] ?? m[2] ?? '').split(',').map((s) => s.trim()).filter(Boolean))
    if (new RegExp(`^tcp dport ${port} (?:counter(?: packets \\d+ bytes \\d+)? )?drop$`).test(line)) drops = true
  }
  return { sources: sources.sort(), drops }
}

const list = (xs: string[]): string => xs.join(', ')

function compare(have: string[], want: string[]): { missing: string[]; extra: string[] } {
  return { missing: want.filter((w) => !have.includes(w)), extra: have.filter((h) => !want.includes(h)) }
}

/** One check result for the listener's firewall; `host` names the host in the next step. */
export function firewallVerdict(plan: FirewallPlan, live: LiveFirewall, host: string): Verdict {
  const { spec } = plan
  const fix = `re-apply the inventory's rule: \`labctl trivy install --host ${host}\` (it shows the plan first)`
  if (live.planOnly) return skip(`planned only on this host: ${live.planOnly}`)
  // Without the edge's addresses the comparison would call the edge's own rule "extra": say why instead.
  if (plan.warnings.length || !spec.sources.length) {
    return warn(`cannot compare the rule with the inventory: ${plan.warnings[0] ?? 'no sources known (trivy.allowlist is empty)'}`, 'fix the lab DNS (`labctl trivy validate --only dns`) or set trivy.allowlist')
  }
  const want = [...spec.sources].sort()
  const ufwLines = (live.ufw ?? '').split('\n')
  if (ufwLines[0]?.trim() === 'present') {
    const keys = parseUfwAdded(live.ufw ?? '')
    if (!keys.length) return fail(`port ${spec.port}/tcp is not restricted: ufw has no ${UFW_COMMENT} rules`, fix)
    if (!/Status: active/.test(ufwLines[1] ?? '')) return fail(`ufw is not active: its ${UFW_COMMENT} rules are not enforced`, 'allow SSH and enable it on the host: `ufw allow OpenSSH && ufw enable`')
    const have = keys.filter((k) => k.startsWith('allow ') && k.endsWith(` ${spec.port}`)).map((k) => k.split(' ')[1]!).sort()
    const denies = keys.includes(`deny any ${spec.port}`)
    return judge(have, want, denies, 'ufw', spec.port, fix)
  }
  const nftLines = (live.nft ?? '').split('\n')
  if (nftLines[0]?.trim() === 'present') {
    const table = nftLines.slice(1).join('\n')
    if (!table.includes(`table inet ${NFT_TABLE}`)) return fail(`port ${spec.port}/tcp is not restricted: nftables table inet ${NFT_TABLE} is not loaded`, fix)
    const t = parseNftTable(table, spec.port)
    return judge(t.sources, want, t.drops, 'nftables', spec.port, fix)
  }
  return fail(`port ${spec.port}/tcp is not restricted: neither ufw nor nft on the host`, `restrict port ${spec.port}/tcp to ${list(want)} by other means, or install nftables and run \`labctl trivy install --host ${host}\``)
}

function judge(have: string[], want: string[], drops: boolean, tool: string, port: number, fix: string): Verdict {
  const { missing, extra } = compare(have, want)
  const problems = [
    ...(missing.length ? [`missing ${list(missing)}`] : []),
    ...(extra.length ? [`extra ${list(extra)}`] : []),
    ...(drops ? [] : [`no rule drops the rest`]),
  ]
  if (problems.length) return fail(`${tool} rule for port ${port}/tcp differs from the inventory: ${problems.join('; ')}`, fix)
  return pass(`${tool}: port ${port}/tcp open to ${list(want)} only`)
}
