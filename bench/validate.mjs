// Issue 10 target: `labctl trivy validate` on the sandbox ≤ 0.5× the seed's manual procedure run as a
// sequential shell script (3 × dig, 2 × curl, 1 × `trivy image --server`), same machine, same run.
//
// The seed scans ubi9/ubi-minimal:9.4 (about 100 packages, ~38 MB compressed). The sandbox's test
// image has 2 packages, so this bench builds a stand-in of that size (`labfixtures image --packages
// 100 --layer-mb 38`), pushes it to the sandbox registry itself (so `sandbox up` stays fast) and has
// the seed's `trivy image --server` scan it through the HAProxy edge with the real trivy client.
//
// A Trivy server caches each layer's analysis, and the client then skips the layer download. So the
// seed procedure is timed twice: "warm" (the same image again, as when an operator re-runs the
// procedure: the server already has the layer) and "cold" (a never-seen image each run, as on a fresh
// server or a new base image: the client downloads, unpacks and analyses all 38 MB). Each run of each
// case is interleaved with the others so machine noise hits them alike. The registry is on loopback,
// so the cold download costs less than a real pull over the network would (in the seed's favour).
//
//   RUNS=7 (timed runs per case)   LAYER_MB=38 PACKAGES=100 (the stand-in image)
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import { homedir, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { median, timeOnce } from './lib.mjs'

const root = join(fileURLToPath(import.meta.url), '..', '..')
const labctl = join(root, 'bin', 'labctl')
const runs = Number(process.env.RUNS ?? 7)
const layerMb = Number(process.env.LAYER_MB ?? 38)
const packages = Number(process.env.PACKAGES ?? 100)
const cacheRoot = join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'labctl')
const trivy = process.env.LABCTL_TRIVY_BIN || join(cacheRoot, 'trivy', '0.74.0', 'trivy')
const fxLink = join(cacheRoot, 'labfixtures', 'current')
const labfixtures = process.env.LABCTL_LABFIXTURES_BIN || (existsSync(fxLink) ? readlinkSync(fxLink) : fxLink)
const tmp = mkdtempSync(join(tmpdir(), 'labctl-bench-'))
// labctl needs no local trivy for validate; when it finds one (LABCTL_TRIVY_BIN or `trivy` on PATH) it
// also compares the client's version with the server's. The headline runs without one (as before);
// `envClient` is the operator who has trivy installed for the seed procedure.
const env = { ...process.env, XDG_CONFIG_HOME: join(tmp, 'config'), LABCTL_SANDBOX_DIR: join(tmp, 'sb'), NO_COLOR: '1', CI: '1' }
delete env.LABCTL_TRIVY_BIN
const envClient = { ...env, LABCTL_TRIVY_BIN: trivy }
const run = (cmd, args, opts = {}) => {
  const r = spawnSync(cmd, args, { env, encoding: 'utf8', timeout: 300_000, ...opts })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status ?? r.signal}: ${String(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}`)
  return r.stdout
}
const ms = (x) => `${x.toFixed(0).padStart(6)} ms`

let proxy
try {
  for (const [what, path] of [['trivy', trivy], ['labfixtures', labfixtures]]) {
    if (!existsSync(path)) throw new Error(`${what} not found at ${path}: run ./scripts/build-tools.sh`)
  }
  // The loopback sandbox: the seed's script below addresses its parts on 127.0.0.1.
  const up = JSON.parse(run(labctl, ['sandbox', 'up', '--loopback', '--json']))
  const inv = readFileSync(up.inventory, 'utf8')
  const dnsPort = /servers:\n\s+- 127\.0\.0\.1:(\d+)/.exec(inv)[1]
  const pub = new URL(/publicUrl: (\S+)/.exec(inv)[1])
  const registry = up.image.split('/')[0] // 127.0.0.1:PORT
  const ca = join(tmp, 'sb', 'tls', 'ca.pem')

  // The stand-in for ubi9/ubi-minimal:9.4: one image for the warm case, one per cold run (another
  // --seed, so no layer in common), each built, pushed with skopeo (as `sandbox up` pushes its
  // image) and its OCI layout dropped again.
  const buildPush = (seed) => {
    const dir = join(tmp, `image-${seed}`)
    const t0 = performance.now()
    let line
    try {
      line = run(labfixtures, ['image', '--out', dir, '--tag', '1', '--packages', String(packages), '--layer-mb', String(layerMb), '--seed', String(seed)]).trim()
    } catch (err) {
      throw new Error(`${err.message}\n  next: ./scripts/build-tools.sh rebuilds labfixtures when its sources change (this bench needs \`image --packages\`)`)
    }
    const t1 = performance.now()
    const ref = `${registry}/bench/ubi-minimal-standin:seed${seed}`
    run('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci:${dir}:1`, `docker://${ref}`], { env: { ...env, HOME: tmp } })
    rmSync(dir, { recursive: true, force: true })
    return { ref, line, buildMs: t1 - t0, pushMs: performance.now() - t1 }
  }
  console.log(`building and pushing ${runs + 2} stand-in images (${packages} packages, ${layerMb} MB gzip layer each)…`)
  const images = Array.from({ length: runs + 2 }, (_, i) => buildPush(i + 1))
  const [warmImage, ...coldImages] = images
  console.log(`  ${warmImage.line.replace(/^image \S+@/, '')}`)
  console.log(`  build ${ms(median(images.map((i) => i.buildMs)))}, skopeo push ${ms(median(images.map((i) => i.pushMs)))} (medians)`)

  // The operator's workstation resolves the lab's names; here a CONNECT proxy that asks the sandbox
  // DNS stands in for that, in its own process (the timings below block this one).
  const proxyJs = `import(${JSON.stringify(join(root, 'dist/src/net/connect-proxy.js'))}).then(async (m) => { const p = await m.startConnectProxy({ dnsServers: ['127.0.0.1:${dnsPort}'], dnsTimeoutMs: 1000 }); console.log(p.url) })`
  proxy = spawn(process.execPath, ['-e', proxyJs], { stdio: ['ignore', 'pipe', 'inherit'] })
  const proxyUrl = await new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error('the CONNECT proxy did not start within 10 s')), 10_000)
    proxy.stdout.once('data', (d) => (clearTimeout(t), res(String(d).trim())))
  })

  // The seed's "Validation" section, as an operator would paste it (token from the secrets dir, via
  // env), with the version check and telemetry off. After each step it appends a timestamp to $2, for
  // the per-part figures; the whole script's wall time is the headline.
  const script = join(tmp, 'seed-validation.sh')
  const resolve = `--resolve ${pub.hostname}:${pub.port}:127.0.0.1`
  writeFileSync(
    script,
    `#!/bin/sh
set -e
mark() { date +%s%N >>"$2"; }
mark "$@"
dig @127.0.0.1 -p ${dnsPort} trivy-0.sandbox.lab.test A +short
dig @127.0.0.1 -p ${dnsPort} trivy.sandbox.lab.test A +short
dig @127.0.0.1 -p ${dnsPort} ${pub.hostname} A +short
mark "$@"
curl -sS --max-time 10 --cacert ${ca} ${resolve} ${pub.origin}/healthz
curl -sS --max-time 10 --cacert ${ca} ${resolve} ${pub.origin}/version
mark "$@"
export TRIVY_TOKEN="$(cat ${join(tmp, 'sb', 'secrets', 'trivy-vm', 'token')})"
export HTTPS_PROXY=${proxyUrl} SSL_CERT_FILE=${ca}
${trivy} image --server ${pub.origin} --severity HIGH,CRITICAL --format json --quiet \\
  --timeout 120s --skip-version-check --disable-telemetry --cache-dir ${join(tmp, 'client-cache')} "$1" >/dev/null
mark "$@"
`,
    { mode: 0o700 },
  )
  const parts = { warm: [], cold: [] }
  const seedRun = (kind, ref) => {
    const marks = join(tmp, 'marks')
    rmSync(marks, { force: true })
    const total = timeOnce('/bin/sh', [script, ref, marks], { expectStatus: 0, env })
    const t = readFileSync(marks, 'utf8').trim().split('\n').map((x) => Number(BigInt(x) / 1000n) / 1000)
    parts[kind].push({ dig: t[1] - t[0], curl: t[2] - t[1], trivy: t[3] - t[2] })
    return total
  }
  const validateArgs = ['trivy', 'validate', '--lab', 'sandbox']
  const cases = [
    { name: 'seed procedure, warm', fn: () => seedRun('warm', warmImage.ref) },
    { name: 'seed procedure, cold', fn: (i) => seedRun('cold', coldImages[i].ref) },
    { name: 'labctl trivy validate', fn: () => timeOnce(labctl, validateArgs, { env, expectStatus: 0 }) },
    { name: 'labctl trivy validate, local trivy', fn: () => timeOnce(labctl, validateArgs, { env: envClient, expectStatus: 0 }) },
    { name: 'labctl trivy validate --only dns', fn: () => timeOnce(labctl, [...validateArgs, '--only', 'dns'], { env, expectStatus: 0 }) },
    { name: 'labctl trivy validate --image', fn: () => timeOnce(labctl, [...validateArgs, '--image', warmImage.ref, '--gate', 'CRITICAL'], { env: envClient, expectStatus: 0 }) },
  ]
  // Warm-up: the first scan of the warm image (server cache filled) and one cold image; not counted.
  for (const c of cases) c.fn(runs)
  parts.warm.length = parts.cold.length = 0
  const times = Object.fromEntries(cases.map((c) => [c.name, []]))
  for (let i = 0; i < runs; i++) for (const c of cases) times[c.name].push(c.fn(i))
  const m = Object.fromEntries(cases.map((c) => [c.name, median(times[c.name])]))

  // CPU (user + sys of the children, dash's `times`) of a few more runs: what the commands cost
  // when the machine is not shared (wall time on a busy 2-core machine mostly measures waiting).
  const cpuRuns = Math.max(3, Math.ceil(runs / 2))
  const cpuOf = (cmd, args) => {
    const loop = `i=0; while [ $i -lt ${cpuRuns} ]; do "$@" >/dev/null 2>&1 || exit 1; i=$((i+1)); done; times`
    const r = spawnSync('/bin/sh', ['-c', loop, 'sh', cmd, ...args], { env, encoding: 'utf8', timeout: 300_000 })
    const t = r.status === 0 ? r.stdout.trim().split('\n').at(-1).match(/(\d+)m([\d.]+)s\s+(\d+)m([\d.]+)s/) : undefined
    if (!t) throw new Error(`could not time ${cmd} ${args.join(' ')}: ${r.stderr || r.stdout}`)
    return ((Number(t[1]) * 60 + Number(t[2]) + Number(t[3]) * 60 + Number(t[4])) * 1000) / cpuRuns
  }
  const cpuSeedWarm = cpuOf('/bin/sh', [script, warmImage.ref, join(tmp, 'marks-cpu')])
  const cpuLab = cpuOf(labctl, validateArgs)
  const cpuLabDns = cpuOf(labctl, [...validateArgs, '--only', 'dns'])

  // What the seed's scan saw in the stand-in: the OS, how many packages, the findings (one more warm scan).
  const seen = JSON.parse(
    run(trivy, ['image', '--server', pub.origin, '--format', 'json', '--quiet', '--list-all-pkgs', '--skip-version-check', '--disable-telemetry', '--timeout', '120s', '--cache-dir', join(tmp, 'client-cache'), warmImage.ref], {
      env: { ...env, TRIVY_TOKEN: readFileSync(join(tmp, 'sb', 'secrets', 'trivy-vm', 'token'), 'utf8').trim(), HTTPS_PROXY: proxyUrl, SSL_CERT_FILE: ca },
      maxBuffer: 64 << 20,
    }),
  )
  const osResult = (seen.Results ?? []).find((r) => r.Class === 'os-pkgs')
  const scanned = `${seen.Metadata?.OS?.Family ?? '?'} ${seen.Metadata?.OS?.Name ?? '?'}, ${osResult?.Packages?.length ?? 0} packages, ${(osResult?.Vulnerabilities ?? []).length} vulnerabilities`
  if ((osResult?.Packages?.length ?? 0) !== packages) throw new Error(`trivy saw ${scanned} in the stand-in, expected ${packages} packages`)

  // Where labctl's fixed cost goes, in CPU ms of one process that loads what `labctl trivy validate`
  // loads before its first check (median of cpuRuns): Node, @oclif/core, oclif's Config.load (manifest,
  // core plugins), then the command's bundle chunks (undici, zod, yaml, dns2 and labctl's own code).
  const probe = join(tmp, 'probe.mjs')
  writeFileSync(
    probe,
    `import * as nodeModule from 'node:module'
nodeModule.enableCompileCache?.()
const req = nodeModule.createRequire(${JSON.stringify(join(root, 'bin', 'run.js'))})
const c = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000 }
const c0 = c()
const oclif = await import(req.resolve('@oclif/core'))
const c1 = c()
const config = await oclif.Config.load({ root: ${JSON.stringify(root)} })
const c2 = c()
await config.findCommand('trivy:validate').load()
const c3 = c()
console.log(JSON.stringify({ node: c0, oclif: c1 - c0, config: c2 - c1, command: c3 - c2 }))
`,
  )
  const probes = Array.from({ length: cpuRuns }, () => JSON.parse(run(process.execPath, [probe])))
  const fixed = Object.fromEntries(['node', 'oclif', 'config', 'command'].map((k) => [k, median(probes.map((p) => p[k]))]))

  // labctl's own breakdown: each check's duration (they run concurrently) from one --json run.
  const report = JSON.parse(run(labctl, [...validateArgs, '--json']))
  const checks = report.checks ?? report.results ?? []
  const byFamily = {}
  for (const c of checks) byFamily[c.check] = Math.max(byFamily[c.check] ?? 0, c.durationMs)
  const slowest = Math.max(...checks.map((c) => c.durationMs))

  const lab = m['labctl trivy validate']
  const warm = m['seed procedure, warm']
  const cold = m['seed procedure, cold']
  const part = (kind, k) => median(parts[kind].map((p) => p[k]))
  console.log(`\nvalidate vs the seed's manual procedure, median of ${runs} runs (same run, interleaved):`)
  console.log(`  the seed's trivy image saw in the stand-in: ${scanned}`)
  console.log(`  seed procedure, warm server cache            ${ms(warm)}   (3 dig ${ms(part('warm', 'dig'))}, 2 curl ${ms(part('warm', 'curl'))}, trivy image ${ms(part('warm', 'trivy'))})`)
  console.log(`  seed procedure, cold (image never scanned)   ${ms(cold)}   (3 dig ${ms(part('cold', 'dig'))}, 2 curl ${ms(part('cold', 'curl'))}, trivy image ${ms(part('cold', 'trivy'))})`)
  console.log(`  labctl trivy validate (${checks.length} checks)              ${ms(lab)}   (checks run concurrently, slowest ${slowest.toFixed(0)} ms; the rest is start-up and rendering)`)
  console.log(`    per check family (max): ${Object.entries(byFamily).map(([k, v]) => `${k} ${v.toFixed(0)}`).join(', ')} ms`)
  console.log(`  labctl trivy validate, trivy client found     ${ms(m['labctl trivy validate, local trivy'])}   (adds the client-version check: runs \`trivy version\`)`)
  console.log(`  labctl trivy validate --only dns             ${ms(m['labctl trivy validate --only dns'])}   (3 DNS checks: about labctl's fixed cost, Node + oclif + loading the command)`)
  console.log(`  labctl trivy validate --image (warm image)   ${ms(m['labctl trivy validate --image'])}   (the same checks plus a real trivy image scan of the stand-in; not the goal)`)
  const verdict = (r) => `${r.toFixed(2)}× (goal ≤ 0.5×: ${r <= 0.5 ? 'met' : 'MISSED'})`
  console.log(`  CPU per run (user + sys, ${cpuRuns} runs): seed procedure warm ${cpuSeedWarm.toFixed(0)} ms, labctl trivy validate ${cpuLab.toFixed(0)} ms (${(cpuLab / cpuSeedWarm).toFixed(2)}×), --only dns ${cpuLabDns.toFixed(0)} ms`)
  console.log(`  labctl's fixed cost before any check, CPU: node ${fixed.node.toFixed(0)} ms, import @oclif/core ${fixed.oclif.toFixed(0)} ms, Config.load ${fixed.config.toFixed(0)} ms, loading the validate command's bundle ${fixed.command.toFixed(0)} ms`)
  console.log(`  ratio vs warm seed procedure: ${verdict(lab / warm)}`)
  console.log(`  ratio vs cold seed procedure: ${verdict(lab / cold)}`)
} finally {
  proxy?.kill()
  spawnSync(labctl, ['sandbox', 'down'], { env, timeout: 120_000 })
  rmSync(tmp, { recursive: true, force: true })
}
