// The exporter's own cost: memory after an hour of probing, with time sped up. Probes the loopback
// stand-ins of test/exporter (an HTTPS edge and one host) every INTERVAL_MS (default 5 ms: 3600 runs per
// target = an hour at a 1 s interval, 60 hours at the default 60 s) while scraping /metrics 10x per run.
// Prints RSS and heap at the start, after, and after a GC; and the scans the servers counted.
// Run: NODE_OPTIONS=--expose-gc npx vite-node bench/exporter-memory.ts   (RUNS=3600 INTERVAL_MS=5)
import { createProbes } from '../src/exporter/probes.js'
import { startExporter } from '../src/exporter/server.js'
import { startTestLab, TOKEN } from '../test/exporter/lab.js'

const runs = Number(process.env.RUNS ?? 3600)
const intervalMs = Number(process.env.INTERVAL_MS ?? 5)
const gc = (globalThis as { gc?: () => void }).gc
const mib = (n: number): string => `${(n / 1024 / 1024).toFixed(1)} MiB`
const mem = (): string => {
  gc?.()
  const m = process.memoryUsage()
  return `rss ${mib(m.rss)}, heap used ${mib(m.heapUsed)}`
}

const lab = await startTestLab()
const backend = await createProbes({ loaded: lab.loaded, hosts: lab.loaded.inventory.trivy.hosts, token: TOKEN, timeoutMs: 2000, sshTimeoutMs: 1000, journalSince: '-60s', ssh: false })
const e = await startExporter({ inventory: lab.loaded.inventory, backend, listen: '127.0.0.1:0', httpIntervalMs: intervalMs, sshIntervalMs: 3_600_000, httpTimeoutMs: 10_000, sshTimeoutMs: 2000, probeMinAgeMs: 0, staggerMs: 0 })
const started = performance.now()
// Warm up (JIT, TLS session, agent pools) before the baseline.
while ((e.scheduler.state('edge', 'http')?.runs ?? 0) < 20) await new Promise((r) => setTimeout(r, 10))
const baseline = mem()
const base = { edge: lab.edge.scans, host: lab.host.scans, runs: e.scheduler.state('edge', 'http')!.runs }
let scrapes = 0
let last = 0
while ((e.scheduler.state('edge', 'http')?.runs ?? 0) - base.runs < runs && performance.now() - started < 30 * 60_000) {
  const r = await fetch(`${e.url}/metrics`, { signal: AbortSignal.timeout(5000) })
  await r.text()
  scrapes += 1
  const done = e.scheduler.state('edge', 'http')!.runs - base.runs
  if (done - last >= runs / 4) {
    last = done
    process.stdout.write(`  after ${done} runs per target: ${mem()}\n`)
  }
  await new Promise((res) => setTimeout(res, Math.max(1, intervalMs / 10)))
}
const s = e.scheduler.states()
const wall = (performance.now() - started) / 1000
await e.close()
await lab.close()
process.stdout.write(
  [
    `exporter memory, ${s.map((x) => `${x.target} ${x.runs} runs`).join(', ')}, ${scrapes} scrapes, in ${wall.toFixed(0)} s`,
    `  baseline (after 20 runs): ${baseline}`,
    `  after the runs:           ${mem()}`,
    `  canaries counted by the servers: edge ${lab.edge.scans - base.edge}, host ${lab.host.scans - base.host} (one per run: scrapes add none)`,
    `  probe errors: ${s.map((x) => `${x.target} ${x.failures}`).join(', ')}`,
    '',
  ].join('\n'),
)
