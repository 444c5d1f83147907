// Hostile-input cases through the CLI (issue 17): a server that reflects the request (the token must be
// redacted from text, --json and JUnit), a catastrophic `matches:` pattern, Ctrl-C during a stuck run, a
// state-changing `type: check` step under --dry-run, and --transcript on a missing dir or a device.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { expectContract, file, inventory, runLabctl, TEST_TOKEN, WORK } from './harness.js'
import { httpServer } from './responders.js'

const closers: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const c of closers) await c()
})

// A server that reflects the request: every header (the token among them) in a 500 page's <title>,
// in JSON fields, in a header and in a Twirp error message.
let reflect = ''
beforeAll(async () => {
  const s = await httpServer((req, res) => {
    // The token first, so no truncation of a long echo can hide it.
    const echo = `${String(req.headers['trivy-token'] ?? '')} ${JSON.stringify(req.headers)}`
    let body = ''
    req.on('data', (d: Buffer) => {
      if (body.length < 65_536) body += d.toString()
    })
    req.on('end', () => {
      if (req.url?.startsWith('/twirp/')) {
        res.writeHead(500, { 'content-type': 'application/json', 'x-echo': encodeURIComponent(echo) })
        res.end(JSON.stringify({ code: 'internal', msg: `failed for ${echo} ${body}`, meta: { headers: echo } }))
        return
      }
      if (req.url === '/version') {
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ Version: echo, VulnerabilityDB: { UpdatedAt: echo, NextUpdate: echo } }))
        return
      }
      res.writeHead(500, { 'content-type': 'text/html', 'x-echo': encodeURIComponent(echo) })
      res.end(`<html><title>Error for ${echo}</title><body>${echo}</body></html>`)
    })
  })
  reflect = s.url
  closers.push(s.close)
})

describe('blocks: a reflecting peer never makes labctl print the token', () => {
  for (const fmt of ['text', 'json'] as const) {
    it(`validate against a reflecting server (${fmt}, and the JUnit file)`, async () => {
      const junit = join(WORK, `reflect-${fmt}.xml`)
      const cfg = file(`reflect-${fmt}.yaml`, inventory({ publicUrl: reflect }))
      const r = await runLabctl(['trivy', 'validate', '--config', cfg, '--only', 'healthz,version,db,auth,scan', '--timeout', '3000', '--junit', junit, ...(fmt === 'json' ? ['--json'] : [])], { killAfterMs: 40_000 })
      expectContract(r, { code: 3, match: fmt === 'json' ? /"status"/ : /next:/, withinMs: 35_000 })
      expect(readFileSync(junit, 'utf8').includes(TEST_TOKEN)).toBe(false)
      // Not vacuous: the server did get the token and echoed it; labctl printed it redacted.
      expect(`${r.stdout}${r.stderr}`).toMatch(/\*\*\*|\[REDACTED\]/)
    })
  }
})

const runbook = (name: string, body: string): string => file(`${name}.yaml`, body)
const HEADER = (name: string): string => `name: ${name}\ntitle: Hostile ${name}\nsymptom: a hostile runbook\ncauses:\n  c1: a cause\nfix: nothing\n`

describe('runbook: conditions cannot hang, Ctrl-C ends a run, dry-run changes nothing', () => {
  it('a catastrophic `matches:` pattern does not hang the run (refused or linear)', async () => {
    // The inventory name is "aaaa…aX": /^(a|aa)+$/ backtracks exponentially on it with a backtracking engine.
    const cfg = file('redos-inv.yaml', inventory().replace('name: hostile', `name: ${'a'.repeat(60)}X`))
    const rb = runbook(
      'redos',
      `${HEADER('redos')}steps:\n  - id: probe\n    type: check\n    title: probe\n    run: config validate\n  - id: d\n    type: diagnosis\n    title: d\n    cases:\n      - cause: c1\n        when:\n          - value: { step: probe, path: lab, matches: '^(a|aa)+$' }\n`,
    )
    const r = await runLabctl(['runbook', 'run', rb, '--config', cfg, '--dry-run', '--yes'], { killAfterMs: 25_000 })
    expect(r.code, `${r.stdout}\n${r.stderr}`).not.toBe('killed')
    expect([0, 2, 3]).toContain(r.code)
    expect(r.ms).toBeLessThan(20_000)
    expect(`${r.stdout}${r.stderr}`).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m)
  })

  it('Ctrl-C ends a run stuck in a condition: exit 130 within 3 s', async () => {
    const cfg = file('redos-inv2.yaml', inventory().replace('name: hostile', `name: ${'a'.repeat(60)}X`))
    const rb = runbook(
      'redos2',
      `${HEADER('redos2')}steps:\n  - id: probe\n    type: check\n    title: probe\n    run: config validate\n  - id: d\n    type: diagnosis\n    title: d\n    cases:\n      - cause: c1\n        when:\n          - value: { step: probe, path: lab, matches: '^(a|aa)+$' }\n`,
    )
    const r = await runLabctl(['runbook', 'run', rb, '--config', cfg, '--dry-run', '--yes'], { sigintAfterMs: 4000, killAfterMs: 15_000 })
    expect(r.code, `${r.stdout}\n${r.stderr}`).not.toBe('killed')
    // Refusing the pattern up front (exit 2) or finishing before the signal is fine too; hanging is not.
    if (r.ms > 4000) {
      expect(r.code).toBe(130)
      expect(r.ms).toBeLessThan(7000)
    } else expect([0, 2, 3]).toContain(r.code)
  })

  it('a `type: check` step whose command changes state is refused by the parser', async () => {
    const rb = runbook('mutating-check', `${HEADER('mutating-check')}steps:\n  - id: sneaky\n    type: check\n    title: looks harmless\n    run: trivy rotate-token --yes\n`)
    const r = await runLabctl(['runbook', 'show', rb])
    expectContract(r, { code: 2, match: /check|read-only|changes state/i })
  })

  it('--transcript in a missing directory is a usage error with the path', async () => {
    const r = await runLabctl(['runbook', 'run', 'db-stale', '--config', file('tr-inv.yaml', inventory()), '--dry-run', '--yes', '--transcript', join(WORK, 'no', 'such', 'dir')])
    expectContract(r, { code: 2, match: /transcript.*no[/]such[/]dir|no[/]such[/]dir.*transcript/ })
  })

  it('--transcript on a device is a usage error', async () => {
    const r = await runLabctl(['runbook', 'run', 'db-stale', '--config', file('tr-inv2.yaml', inventory()), '--dry-run', '--yes', '--transcript', '/dev/null'])
    expectContract(r, { code: 2, match: /transcript/ })
  })
})
