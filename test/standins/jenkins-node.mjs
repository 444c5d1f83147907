// The sandbox's Jenkins machine: runs the credentials-plugin stand-in (jenkins.ts) as a daemon.
// Usage: node jenkins-node.mjs HOST PORT SEED.json — the seed (users with their API tokens, and the
// credentials with their secrets) is read from a 0600 file (or stdin without SEED), never from argv.
import { readFileSync } from 'node:fs'
import { startJenkinsStandin } from './jenkins.ts'

const [host, port, seedFile] = process.argv.slice(2)
const seed = JSON.parse(readFileSync(seedFile ?? 0, 'utf8'))
const j = await startJenkinsStandin({ ...seed, listen: { host, port: Number(port) } })
const log = (m) => process.stdout.write(`${new Date().toISOString()} ${m}\n`)
log(`jenkins stand-in serving on ${j.url}`)
let seen = 0
// One log line per request (method, path, status; never headers or bodies), checked once a second.
setInterval(() => {
  for (const r of j.received.slice(seen)) log(`${r.method} ${r.path}`)
  seen = j.received.length
}, 1000).unref()
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => void j.stop().then(() => process.exit(0)))
