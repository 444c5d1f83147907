// A hostile scanner on loopback that reflects what it was sent — a 500 page whose <title> holds the request
// headers, a scan answer whose fields carry the token, a non-JSON body echoing the request — must not make
// validate print the token: not in the text lines, not in --json, not in the JUnit file.
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseInventory } from '../../src/inventory/load.js'
import { runValidate, type ValidateResult } from '../../src/trivy/validate.js'
import { toJUnit } from '../../src/report/junit.js'
import { checkLine } from '../../commands/_render.js'

const TOKEN = 'Zq7xW2mK9pL4vB8nR3tY6uE1oI5aS0dF-gH_jJ'
const HEADER = 'Trivy-Token'
type Mode = 'title' | 'fields' | 'not-json' | 'plain'

const tmp = mkdtempSync(join(tmpdir(), 'labctl-echo-'))
let server: Server
let port = 0
let mode: Mode = 'title'

const headerDump = (req: IncomingMessage): string => Object.entries(req.headers).map(([k, v]) => `${k}: ${String(v)}`).join('; ')
const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => (body += c.toString()))
    req.on('end', () => {
      const sent = req.headers[HEADER.toLowerCase()]
      if (req.url === '/healthz') return void res.writeHead(200, { 'content-type': 'text/plain' }).end('ok')
      if (req.url === '/version') {
        return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ Version: '0.74.0', VulnerabilityDB: { Version: 2, UpdatedAt: new Date().toISOString() } }))
      }
      // The auth probes: no token or a wrong one is refused, as a healthy server does.
      if (sent !== TOKEN) return void res.writeHead(401, { 'content-type': 'application/json' }).end('{"code":"unauthenticated","msg":"invalid token"}')
      if (mode === 'title') {
        return void res.writeHead(500, { 'content-type': 'text/html' }).end(`<html><head><title>500 Internal Server Error for ${headerDump(req)}</title></head><body>${esc(headerDump(req))}</body></html>`)
      }
      if (mode === 'not-json') return void res.writeHead(200, { 'content-type': 'text/plain' }).end(`you sent ${headerDump(req)} and ${body}`)
      if (mode === 'plain') return void res.writeHead(400, { 'content-type': 'text/plain' }).end(`bad request: ${HEADER}=${encodeURIComponent(TOKEN)} (${JSON.stringify(TOKEN)})`)
      if (req.url?.endsWith('/Scan')) {
        const vuln = { vulnerability_id: `CVE-${TOKEN}`, pkg_name: 'openssl', severity: `HIGH ${esc(TOKEN)}` }
        return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ results: [{ target: `echo ${TOKEN}`, vulnerabilities: [vuln] }] }))
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  port = (server.address() as AddressInfo).port
})
afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()))
  rmSync(tmp, { recursive: true, force: true })
})

async function validate(m: Mode): Promise<{ result: ValidateResult; outputs: Record<'text' | 'json' | 'junit', string> }> {
  mode = m
  const text = `name: echo
dns: { servers: [127.0.0.1] }
trivy:
  version: 0.74.0
  publicUrl: http://127.0.0.1:${port}
  hosts:
    - { name: trivy-0, fqdn: trivy-0.lab.test, debugUrl: "http://127.0.0.1:${port}" }
`
  const loaded = { inventory: parseInventory(text, 'inv.yaml'), path: join(tmp, 'inv.yaml'), dir: tmp }
  const result = await runValidate({ loaded, hosts: loaded.inventory.trivy.hosts, only: ['healthz', 'version', 'db', 'scan', 'auth'], env: { TRIVY_TOKEN: TOKEN }, timeoutMs: 5000, scanTimeoutMs: 5000 })
  return { result, outputs: { text: result.checks.map(checkLine).join('\n'), json: JSON.stringify(result), junit: toJUnit('labctl.trivy.validate', result.checks) } }
}

/** The token in any spelling a renderer could produce: raw, escaped for XML/JSON, URL-encoded, or a long piece of it. */
function expectNoToken(outputs: Record<string, string>): void {
  for (const [name, out] of Object.entries(outputs)) {
    for (const piece of [TOKEN, TOKEN.slice(0, 16), TOKEN.slice(-16), encodeURIComponent(TOKEN)]) expect(out, `${name} holds the token`).not.toContain(piece)
  }
}

describe('validate against a server that echoes the request', () => {
  it('a 500 page whose <title> lists the request headers', async () => {
    const { result, outputs } = await validate('title')
    const scans = result.checks.filter((c) => c.check === 'scan')
    expect(scans.map((c) => c.status)).toEqual(['fail', 'fail'])
    // The echo really reached the output, with the token replaced.
    expect(scans[0]!.detail).toMatch(/HTTP 500 with HTML page "500 Internal Server Error for .*trivy-token: \[REDACTED\]/i)
    expectNoToken(outputs)
  })

  it('a scan answer whose fields carry the token', async () => {
    const { result, outputs } = await validate('fields')
    const scan = result.checks.find((c) => c.check === 'scan')!
    expect(scan.status).toBe('pass')
    expect(scan.detail).toContain('CVE-[REDACTED] HIGH [REDACTED]')
    expect(result.checks.filter((c) => c.check === 'auth').map((c) => c.status)).toEqual(['pass', 'pass'])
    expectNoToken(outputs)
  })

  it('a non-JSON answer echoing the headers, and a 400 echoing the token URL-encoded and JSON-quoted', async () => {
    for (const m of ['not-json', 'plain'] as const) {
      const { result, outputs } = await validate(m)
      const scan = result.checks.find((c) => c.check === 'scan')!
      expect(scan.status).toBe('fail')
      expect(scan.detail).toContain('[REDACTED]')
      expectNoToken(outputs)
    }
  })
})
