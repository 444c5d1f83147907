// `labctl trivy install`, step 1: the host's current state, read in one SSH command and parsed.
import type { Inventory, ScannerHost } from '../inventory/schema.js'
import type { Remote } from '../ssh/index.js'
import { sections } from './remote.js'
import { quietTrivyAssignments } from './quiet.js'
import { NFT_FILE, NFT_TABLE, unitPath } from './install-render.js'

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

/** The host's current state in one SSH command (as root through sudo -n). */
export async function readHostState(o: { inv: Inventory; host: ScannerHost; remote: Remote; timeoutMs: number }): Promise<HostState> {
  const { inv, host, timeoutMs } = o
  const t = inv.trivy
  const r = await o.remote.run(host, ['sh', '-c', STATE_SCRIPT, 'labctl-install-state', t.serviceName, t.serviceUser, t.cacheDir, t.envFile, unitPath(inv), NFT_FILE], {
    sudo: true,
    timeoutMs,
    check: true,
  })
  return parseHostState(r.stdout)
}
