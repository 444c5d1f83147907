// `labctl trivy check`: disk, DB freshness, the DB file and the journal of a scanner host, read by ONE
// remote command (as few processes as possible: it is most of the check's time) and judged here.
// No HTTP: this module stays light to load.
import { z } from 'zod'
import type { RunOptions } from '../ssh/index.js'
import { fail, pass, skip, warn, type CheckResult } from '../checks/types.js'
import { sections, type HostOpOptions } from './host-op.js'
import { METRICS, formatMetrics, type Sample } from './metrics.js'
import { dbAge, futureDbProblem } from './freshness.js'
import { FIREWALL_SCRIPT, firewallVerdict } from './firewall-check.js'
import { firewallSources } from './install-plan.js'

// Processes started on the host besides timeout/sudo/sh: df, du, stat, od, flock, journalctl, awk; the
// rest is shell builtins, and the splitting into fields happens here rather than in tail/cut/tr.
const CHECK_SCRIPT = `
dir=$1; svc=$2; since=$3; db=$1/db/trivy.db; meta=$1/db/metadata.json
echo "@@df"; df -P -B1 "$dir" 2>/dev/null
echo "@@du"; du -sb "$dir" 2>/dev/null
echo "@@meta"
if [ -r "$meta" ]; then while IFS= read -r l || [ -n "$l" ]; do printf '%s\\n' "$l"; done < "$meta"; else echo MISSING; fi
echo "@@db"
if [ -f "$db" ]; then
  stat -c %s "$db"
  echo "@@magic"; od -An -tx1 -N32 "$db"
  echo "@@lock"; if flock -n -s 9 9<"$db" 2>/dev/null; then echo unlocked; else echo locked; fi
else echo MISSING; fi
echo "@@journal"
journalctl -u "$svc" --since "$since" --no-pager -o cat 2>/dev/null | awk '
  /panic:|goroutine [0-9]+ \\[/ { p++ }
  /\\tERROR\\t|\\tFATAL\\t|level=error/ { e++ }
  /invalid token|unauthenticated/ { t++ }
  /" 5[0-9][0-9] | status=5[0-9][0-9]|HTTP status code 5[0-9][0-9]/ { x++ }
  END { printf "panics=%d errors=%d invalid_token=%d http5xx=%d\\n", p, e, t, x }'
${FIREWALL_SCRIPT}
`

const MetaSchema = z.object({ Version: z.number(), NextUpdate: z.string().optional(), UpdatedAt: z.string(), DownloadedAt: z.string().optional() })

export type HostCheck = {
  host: string
  checks: CheckResult[]
  metrics: { dbAgeSeconds?: number; diskUsedRatio?: number; cacheBytes?: number; journal: Record<string, number> }
}

/** bbolt's meta page magic (0xED0CDAED, little endian) sits at byte 16 of the file. */
const BOLT_MAGIC = 'edda0ced'

export async function hostCheck(opts: HostOpOptions & { since: string }): Promise<HostCheck> {
  const { loaded, host } = opts
  const inv = loaded.inventory
  const t = inv.thresholds
  const started = performance.now()
  // The firewall's wanted sources (the edge's addresses from the lab DNS) are looked up meanwhile.
  const wanted = firewallSources(inv, host)
  const r = await opts.remote.run(host, ['sh', '-c', CHECK_SCRIPT, 'labctl-check', inv.trivy.cacheDir, inv.trivy.serviceName, opts.since], {
    sudo: true,
    timeoutMs: opts.timeoutMs,
    check: true,
  } satisfies RunOptions)
  const durationMs = Math.round(performance.now() - started)
  const s = sections(r.stdout)
  const checks: CheckResult[] = []
  const metrics: HostCheck['metrics'] = { journal: {} }
  const add = (check: string, name: string, res: { status: CheckResult['status']; detail: string; fix?: string }): void => {
    checks.push({ check, name, host: host.name, durationMs, ...res })
  }

  // Disk: the cache dir's filesystem, and the cache's own size.
  // `df -P -B1`: a header, then FILESYSTEM TOTAL USED AVAILABLE CAPACITY MOUNTPOINT (which may hold spaces).
  const df = ((s.df ?? '').trim().split('\n').at(-1) ?? '').trim().split(/\s+/)
  const total = Number(df[1])
  const used = Number(df[2])
  if (df.length >= 6 && total > 0) {
    const pct = (used / total) * 100
    metrics.diskUsedRatio = used / total
    const du = (s.du ?? '').trim().split(/\s/)[0]
    const cache = du ? Number(du) : NaN
    if (Number.isFinite(cache)) metrics.cacheBytes = cache
    const mount = df.slice(5).join(' ')
    const detail = `${inv.trivy.cacheDir} on ${mount}: ${pct.toFixed(1)}% used (${gib(used)} of ${gib(total)}), cache ${Number.isFinite(cache) ? gib(cache) : '?'}`
    const fix = `free space (\`labctl trivy exec -- clean --scan-cache\`) or grow the disk; see \`labctl runbook run disk-full\``
    if (pct >= t.diskCritPercent) add('disk', 'disk', fail(`${detail}: above ${t.diskCritPercent}%`, fix))
    else if (pct >= t.diskWarnPercent) add('disk', 'disk', warn(`${detail}: above ${t.diskWarnPercent}%`, fix))
    else add('disk', 'disk', pass(detail))
  } else {
    add('disk', 'disk', fail(`cannot read disk use of ${inv.trivy.cacheDir} (does it exist?)`, `create it: \`labctl trivy install\``))
  }

  // DB metadata freshness.
  const metaText = (s.meta ?? '').trim()
  if (metaText === 'MISSING' || !metaText) {
    add('db-freshness', 'db freshness', fail(`${inv.trivy.cacheDir}/db/metadata.json is missing: the server has no DB`, `\`labctl trivy reset-db --host ${host.name}\``))
  } else {
    let meta: z.infer<typeof MetaSchema> | undefined
    try {
      meta = MetaSchema.parse(JSON.parse(metaText))
    } catch {
      add('db-freshness', 'db freshness', fail('metadata.json is not valid JSON', `\`labctl trivy reset-db --host ${host.name}\``))
    }
    if (meta) {
      const age = dbAge(meta.UpdatedAt, t.dbFreshnessHours)
      if (age.kind === 'unknown') {
        add('db-freshness', 'db freshness', fail(`metadata has no update time: the DB was never downloaded completely`, `\`labctl trivy reset-db --host ${host.name}\``))
      } else {
        const detail = `UpdatedAt ${meta.UpdatedAt} (${age.hours.toFixed(1)} h ago), NextUpdate ${meta.NextUpdate ?? '-'}, DownloadedAt ${meta.DownloadedAt ?? '-'}`
        metrics.dbAgeSeconds = Math.round(age.hours * 3600)
        if (age.kind === 'future') {
          const f = futureDbProblem(meta.UpdatedAt, age.hours)
          add('db-freshness', 'db freshness', fail(f.message, f.suggestion))
        } else if (age.kind === 'stale') {
          add('db-freshness', 'db freshness', fail(`DB is stale: ${detail}; SLA ${t.dbFreshnessHours} h`, `check the DB mirror and the server's updates: \`labctl runbook run db-stale\``))
        } else add('db-freshness', 'db freshness', pass(detail))
      }
    }
  }

  // The DB file itself: present, non-empty, a bbolt file, not held by an exclusive lock.
  const dbSize = (s.db ?? '').trim()
  if (dbSize === 'MISSING' || !dbSize) {
    add('db-file', 'db file', fail(`${inv.trivy.cacheDir}/db/trivy.db is missing`, `\`labctl trivy reset-db --host ${host.name}\``))
  } else {
    const size = Number(dbSize)
    // od prints the first 32 bytes as hex words over two lines.
    const head = (s.magic ?? '').replace(/\s+/g, '')
    const lock = (s.lock ?? '').trim()
    const resetFix = `the DB is corrupted: \`labctl trivy reset-db --host ${host.name}\` (or \`labctl runbook run scan-500\`)`
    if (size === 0) add('db-file', 'db file', fail('trivy.db is empty (0 bytes)', resetFix))
    else if (head.slice(32, 40) !== BOLT_MAGIC) add('db-file', 'db file', fail(`trivy.db (${gib(size)}) is not a bbolt database (bad magic): corrupted`, resetFix))
    else if (lock === 'locked') add('db-file', 'db file', fail('trivy.db is held by an exclusive lock (a stuck download or a second process?)', `find the holder: \`labctl trivy exec\` is not enough — check \`sudo lsof ${inv.trivy.cacheDir}/db/trivy.db\` on ${host.name}`))
    else add('db-file', 'db file', pass(`trivy.db ${gib(size)}, bbolt, not exclusively locked`))
  }

  // The journal since --since.
  const j = /panics=(\d+) errors=(\d+) invalid_token=(\d+) http5xx=(\d+)/.exec(s.journal ?? '')
  if (j) {
    const [panics, errors, invalidToken, http5xx] = j.slice(1).map(Number) as [number, number, number, number]
    metrics.journal = { panics, errors, invalid_token: invalidToken, http5xx }
    const detail = `since ${opts.since}: ${panics} panics, ${errors} errors, ${invalidToken} invalid-token, ${http5xx} 5xx`
    const fix = `read them: \`labctl trivy logs --host ${host.name} --since '${opts.since}'\``
    if (panics > 0) add('journal', 'journal', fail(detail, fix))
    else if (errors > 0 || http5xx > 0 || invalidToken > 0) add('journal', 'journal', warn(detail, fix))
    else add('journal', 'journal', pass(detail))
  } else add('journal', 'journal', skip('journal not readable'))

  // The listener's firewall, live, against the inventory (the rule `trivy install` writes).
  const fw = await wanted
  add('firewall', 'firewall', firewallVerdict(fw, { planOnly: (s.fwplanonly ?? '').trim().split('\n')[0], ufw: (s.ufw ?? '').trim(), nft: (s.nft ?? '').trim() }, host.name))
  return { host: host.name, checks, metrics }
}

function gib(bytes: number): string {
  if (bytes >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(1)} GiB`
  if (bytes >= 1024 ** 2) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`
  return `${(bytes / 1024).toFixed(0)} KiB`
}

/** node_exporter textfile collector format; the names are the shared ones of metrics.ts. */
export function toPrometheus(results: HostCheck[], now = Date.now()): string {
  const status = { pass: 0, warn: 1, fail: 2, skip: -1 } as const
  return formatMetrics([
    { metric: METRICS.dbAge, samples: results.map((r) => [{ host: r.host }, r.metrics.dbAgeSeconds]) },
    { metric: METRICS.diskUsedRatio, samples: results.map((r) => [{ host: r.host }, r.metrics.diskUsedRatio]) },
    { metric: METRICS.cacheBytes, samples: results.map((r) => [{ host: r.host }, r.metrics.cacheBytes]) },
    { metric: METRICS.checkStatus, samples: results.flatMap((r) => r.checks.map((c): Sample => [{ host: r.host, check: c.check }, status[c.status]])) },
    { metric: METRICS.journalLines, samples: results.flatMap((r) => Object.entries(r.metrics.journal).map(([kind, v]): Sample => [{ host: r.host, kind }, v])) },
    { metric: METRICS.checkTimestamp, samples: [[{}, Math.round(now / 1000)]] },
  ])
}
