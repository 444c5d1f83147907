// A build on the sandbox's agent node, as a Jenkins pipeline step would run it:
//   withCredentials([string(credentialsId: CREDENTIAL, variable: 'TRIVY_TOKEN')]) { sh 'trivy image --server … IMAGE' }
// The credential's secret comes from the Jenkins node over the agent's channel (jenkins-node.mjs), then the
// real trivy client scans IMAGE against the public URL (the edge) with it. The token travels only in the
// client's environment (TRIVY_TOKEN), never in an argv; the output names its fingerprint, never the token.
// Run inside the agent's network namespace (`labctl sandbox exec agent -- node agent-build.mjs CONFIG.json`).
// CONFIG: { jenkins: "ADDR:PORT", agent, agentSecretFile, credential, trivy, server, tokenHeader, image,
//           caFile, dns: "ADDR", cacheDir }
// Exit 0 with one JSON line {tokenFingerprint, vulnerabilities: [...]} or 1 with {error}.
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'))
const fail = (error) => {
  process.stdout.write(`${JSON.stringify({ error })}\n`)
  process.exit(1)
}
const fp = (s) => `sha256:${createHash('sha256').update(s).digest('hex').slice(0, 12)}`

function bind() {
  const [host, port] = [cfg.jenkins.slice(0, cfg.jenkins.lastIndexOf(':')), Number(cfg.jenkins.slice(cfg.jenkins.lastIndexOf(':') + 1))]
  const secret = readFileSync(cfg.agentSecretFile, 'utf8').trim()
  return new Promise((resolve, reject) => {
    const sock = connect({ host, port })
    let buf = ''
    const timer = setTimeout(() => {
      sock.destroy()
      reject(new Error(`the Jenkins agent channel ${cfg.jenkins} did not answer within 5 s`))
    }, 5000)
    sock.on('connect', () => sock.write(`${JSON.stringify({ agent: cfg.agent, secret, credential: cfg.credential })}\n`))
    sock.on('data', (d) => (buf += d))
    sock.on('error', (e) => {
      clearTimeout(timer)
      reject(new Error(`the Jenkins agent channel ${cfg.jenkins}: ${e.code ?? e.message}`))
    })
    sock.on('close', () => {
      clearTimeout(timer)
      try {
        const r = JSON.parse(buf.trim())
        r.secret ? resolve(r.secret) : reject(new Error(`Jenkins refused the binding: ${r.error}`))
      } catch {
        reject(new Error('Jenkins answered no JSON line'))
      }
    })
  })
}

let token
try {
  token = await bind()
} catch (e) {
  fail(e.message)
}
// The agent resolves the lab's names with the lab DNS: its own /etc/resolv.conf, in a private mount namespace.
mkdirSync(cfg.cacheDir, { recursive: true, mode: 0o700 })
const resolv = join(cfg.cacheDir, 'resolv.conf')
writeFileSync(resolv, `nameserver ${cfg.dns}\noptions timeout:2 attempts:1\n`)
const argv = ['--mount', '--', 'sh', '-c', 'mount --bind "$0" /etc/resolv.conf && shift && exec "$@"', resolv, 'x', cfg.trivy,
  'image', '--server', cfg.server, '--token-header', cfg.tokenHeader, '--format', 'json', '--quiet', '--timeout', '60s', cfg.image]
const child = spawn('unshare', argv, {
  env: {
    PATH: process.env.PATH,
    HOME: cfg.cacheDir,
    TRIVY_TOKEN: token,
    TRIVY_CACHE_DIR: cfg.cacheDir,
    SSL_CERT_FILE: cfg.caFile,
    TRIVY_SKIP_VERSION_CHECK: 'true',
    TRIVY_DISABLE_TELEMETRY: 'true',
    TRIVY_NO_PROGRESS: 'true',
  },
  stdio: ['ignore', 'pipe', 'pipe'],
})
let out = ''
let err = ''
child.stdout.on('data', (d) => (out += d))
child.stderr.on('data', (d) => (err += d))
const killer = setTimeout(() => child.kill('SIGKILL'), 90_000)
child.on('close', (code) => {
  clearTimeout(killer)
  const clean = (s) => s.replaceAll(token, '[REDACTED]').split('\n').filter(Boolean).slice(-3).join(' | ').slice(0, 600)
  if (code !== 0) fail(`trivy image exited ${code}: ${clean(err || out)}`)
  let report
  try {
    report = JSON.parse(out)
  } catch {
    fail(`trivy image printed no JSON report: ${clean(out)}`)
  }
  const vulnerabilities = (report.Results ?? []).flatMap((r) => (r.Vulnerabilities ?? []).map((v) => `${v.VulnerabilityID} ${v.Severity}`))
  process.stdout.write(`${JSON.stringify({ tokenFingerprint: fp(token), vulnerabilities })}\n`)
})
