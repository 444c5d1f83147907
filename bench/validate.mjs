// Issue 3 target: `labctl trivy validate` on the sandbox ≤ 0.5× the seed's manual procedure run as a
// sequential shell script (3 × dig, 2 × curl, 1 × `trivy image --server`), same machine, same run.
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { homedir, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { compare, timeOnce } from './lib.mjs'

const root = join(fileURLToPath(import.meta.url), '..', '..')
const labctl = join(root, 'bin', 'labctl')
const runs = Number(process.env.RUNS ?? 7)
const tmp = mkdtempSync(join(tmpdir(), 'labctl-bench-'))
const env = { ...process.env, XDG_CONFIG_HOME: join(tmp, 'config'), LABCTL_SANDBOX_DIR: join(tmp, 'sb'), NO_COLOR: '1', CI: '1' }
const sh = (args) => {
  const r = spawnSync(labctl, args, { env, encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`labctl ${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

try {
  const up = JSON.parse(sh(['sandbox', 'up', '--json']))
  const inv = readFileSync(up.inventory, 'utf8')
  const dnsPort = /servers:\n\s+- 127\.0\.0\.1:(\d+)/.exec(inv)[1]
  const pub = new URL(/publicUrl: (\S+)/.exec(inv)[1])
  const ca = join(tmp, 'sb', 'tls', 'ca.pem')
  const trivy = process.env.LABCTL_TRIVY_BIN || join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'labctl', 'trivy', '0.74.0', 'trivy')
  const resolve = `--resolve ${pub.hostname}:${pub.port}:127.0.0.1`
  // The operator's workstation resolves the lab's names; here a CONNECT proxy that asks the sandbox
  // DNS stands in for that, in its own process (the timings below block this one).
  const proxyJs = `import(${JSON.stringify(join(root, 'dist/src/net/connect-proxy.js'))}).then(async (m) => { const p = await m.startConnectProxy({ dnsServers: ['127.0.0.1:${dnsPort}'], dnsTimeoutMs: 1000 }); console.log(p.url) })`
  const proxy = spawn(process.execPath, ['-e', proxyJs], { stdio: ['ignore', 'pipe', 'inherit'] })
  const proxyUrl = await new Promise((res) => proxy.stdout.once('data', (d) => res(String(d).trim())))
  // The seed's "Validation" section, as an operator would paste it (token from the secrets dir, via env).
  const script = join(tmp, 'seed-validation.sh')
  writeFileSync(
    script,
    `#!/bin/sh
set -e
dig @127.0.0.1 -p ${dnsPort} trivy-0.sandbox.lab.test A +short
dig @127.0.0.1 -p ${dnsPort} trivy.sandbox.lab.test A +short
dig @127.0.0.1 -p ${dnsPort} ${pub.hostname} A +short
curl -sS --cacert ${ca} ${resolve} ${pub.origin}/healthz
curl -sS --cacert ${ca} ${resolve} ${pub.origin}/version
export TRIVY_TOKEN="$(cat ${join(tmp, 'sb', 'secrets', 'trivy-vm', 'token')})"
export HTTPS_PROXY=${proxyUrl} SSL_CERT_FILE=${ca}
${trivy} image --server ${pub.origin} --severity HIGH,CRITICAL --format json --quiet \\
  --skip-version-check --disable-telemetry --cache-dir ${join(tmp, 'client-cache')} ${up.image} >/dev/null
`,
    { mode: 0o700 },
  )
  const m = compare(
    [
      { name: 'seed procedure (sh)', fn: () => timeOnce('/bin/sh', [script], { expectStatus: 0 }) },
      { name: 'labctl trivy validate', fn: () => timeOnce(labctl, ['trivy', 'validate', '--lab', 'sandbox'], { env, expectStatus: 0 }) },
    ],
    runs,
  )
  const seed = m['seed procedure (sh)']
  const lab = m['labctl trivy validate']
  console.log(`validate vs the seed's manual procedure, median of ${runs} runs:`)
  console.log(`  seed procedure (3 dig, 2 curl, trivy image)   ${seed.toFixed(0).padStart(6)} ms`)
  console.log(`  labctl trivy validate (12 checks)             ${lab.toFixed(0).padStart(6)} ms`)
  console.log(`  ratio ${(lab / seed).toFixed(2)}× (goal ≤ 0.5×: ${lab / seed <= 0.5 ? 'met' : 'MISSED'})`)
  proxy.kill()
} finally {
  spawnSync(labctl, ['sandbox', 'down'], { env })
  rmSync(tmp, { recursive: true, force: true })
}
