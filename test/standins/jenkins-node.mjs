// The sandbox's Jenkins machine: runs the credentials-plugin stand-in (jenkins.ts) as a daemon.
// Usage: node jenkins-node.mjs HOST PORT SEED.json — the seed (users with their API tokens, and the
// credentials with their secrets) is read from a 0600 file (or stdin without SEED), never from argv.
// The log has one line per request (method and path; never headers or bodies) and, when a stored secret
// changes, its fingerprint (sha256:12 hex, as labctl's audit log writes it) — never the secret.
//
// Build agents: Jenkins hands a build the secret of a credential it binds (withCredentials) over the
// agent's channel to the controller, not over the REST API (which never shows secrets). Here that channel
// is TCP port AGENT_PORT (Jenkins' inbound-agent port, 50000) on the same address: an agent sends one JSON
// line {"agent": NAME, "secret": AGENT_SECRET, "credential": ID} and gets {"secret": …} back for a string
// credential of the system store, or {"error": …}. Agents and their secrets come from the seed ("agents").
import { createHash, timingSafeEqual } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { startJenkinsStandin } from './jenkins.ts'

const [host, port, seedFile, agentPort] = process.argv.slice(2)
const { agents = [], ...seed } = JSON.parse(readFileSync(seedFile ?? 0, 'utf8'))
const j = await startJenkinsStandin({ ...seed, listen: { host, port: Number(port) } })
const log = (m) => process.stdout.write(`${new Date().toISOString()} ${m}\n`)
const fp = (s) => `sha256:${createHash('sha256').update(s).digest('hex').slice(0, 12)}`
log(`jenkins stand-in serving on ${j.url}`)
let seen = 0
const known = new Map()
function flush() {
  for (const r of j.received.slice(seen)) log(`${r.method} ${r.path}`)
  seen = j.received.length
  for (const [store, creds] of j.credentials) {
    for (const [id, c] of creds) {
      const f = fp(c.secret)
      if (known.get(`${store}/${id}`) !== f) log(`credential ${store}/${id} holds ${f}`)
      known.set(`${store}/${id}`, f)
    }
  }
}
flush()
setInterval(flush, 200).unref()

const same = (a, b) => typeof a === 'string' && typeof b === 'string' && a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b))
const channel = createServer((sock) => {
  sock.setTimeout(5000, () => sock.destroy())
  let buf = ''
  sock.on('data', (d) => {
    buf += d
    if (buf.length > 4096) return sock.destroy()
    const nl = buf.indexOf('\n')
    if (nl < 0) return
    let req
    try {
      req = JSON.parse(buf.slice(0, nl))
    } catch {
      return sock.end(`${JSON.stringify({ error: 'not a JSON line' })}\n`)
    }
    const agent = agents.find((a) => a.name === req.agent)
    if (!agent || !same(agent.secret, req.secret)) {
      log(`agent ${String(req.agent).slice(0, 40)} refused: unknown agent or wrong agent secret`)
      return sock.end(`${JSON.stringify({ error: 'unknown agent or wrong agent secret' })}\n`)
    }
    const secret = j.secretOf('system', String(req.credential))
    if (secret === undefined) return sock.end(`${JSON.stringify({ error: `no credential ${String(req.credential).slice(0, 80)}` })}\n`)
    log(`agent ${agent.name} bound system/${req.credential} (${fp(secret)}) for a build`)
    sock.end(`${JSON.stringify({ secret })}\n`)
  })
  sock.on('error', () => {})
})
if (agentPort) channel.listen(Number(agentPort), host, () => log(`agent channel on ${host}:${agentPort}`))
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    flush()
    channel.close()
    void j.stop().then(() => process.exit(0))
  })
}
