// The sandbox's Jenkins machine: runs the credentials-plugin stand-in (jenkins.ts) as a daemon.
// Usage: node jenkins-node.mjs HOST PORT SEED.json — the seed (users with their API tokens, and the
// credentials with their secrets) is read from a 0600 file (or stdin without SEED), never from argv.
// The log has one line per request (method and path; never headers or bodies) and, when a stored secret
// changes, its fingerprint (sha256:12 hex, as labctl's audit log writes it) — never the secret.
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { startJenkinsStandin } from './jenkins.ts'

const [host, port, seedFile] = process.argv.slice(2)
const seed = JSON.parse(readFileSync(seedFile ?? 0, 'utf8'))
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
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    flush()
    void j.stop().then(() => process.exit(0))
  })
}
