import { describe, expect, it } from 'vitest'
import { HttpAnswerError, VersionSchema, describeAnswer, parseJsonAnswer } from '../../src/trivy/api.js'
import { parseShow, toPrometheus } from '../../src/trivy/remote.js'
import { fingerprint } from '../../src/trivy/token.js'
import { redactText } from '../../src/redact.js'
import { shellQuote } from '../../src/ssh/index.js'

const res = (status: number, body: string, type = 'text/html') => ({ status, headers: { 'content-type': type }, body, durationMs: 1 })

describe('reading what a server answered', () => {
  it('an HTML page where JSON was expected is named, not a parse error', () => {
    const page = res(200, '<html><head><title>Sign in - Corporate Proxy</title></head><body>…</body></html>')
    expect(() => parseJsonAnswer(page, VersionSchema, '/version')).toThrow(HttpAnswerError)
    expect(() => parseJsonAnswer(page, VersionSchema, '/version')).toThrow('expected JSON from /version, got HTTP 200 with HTML page "Sign in - Corporate Proxy"')
  })

  it("HAProxy's 503 page means the backend is down", () => {
    const page = res(503, '<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this request.\n</body></html>')
    expect(describeAnswer(page)).toBe('backend down: HAProxy answered 503 (no healthy Trivy server behind it)')
  })

  it('JSON of the wrong shape is reported with what was wrong', () => {
    expect(() => parseJsonAnswer(res(200, '{"version":"x"}', 'application/json'), VersionSchema, '/version')).toThrow(/unexpected JSON from \/version/)
  })

  it('echoed secrets are redacted from answer snippets', () => {
    const body = 'bad request: header Trivy-Token=s3cr3t-token-value was rejected'
    expect(describeAnswer(res(400, body, 'text/plain'), ['s3cr3t-token-value'])).not.toContain('s3cr3t-token-value')
    expect(redactText('a s3cr3t-token-value b', ['s3cr3t-token-value'])).toBe('a [REDACTED] b')
    expect(fingerprint('abc')).toMatch(/^sha256:[0-9a-f]{12}$/)
  })
})

describe('remote output parsing', () => {
  it('parses systemctl show', () => {
    expect(parseShow('ActiveState=active\nMainPID=42\nActiveEnterTimestamp=Sun 2026-11-22 16:00:00 UTC\n')).toEqual({
      ActiveState: 'active',
      MainPID: '42',
      ActiveEnterTimestamp: 'Sun 2026-11-22 16:00:00 UTC',
    })
  })

  it('writes node_exporter textfile metrics', () => {
    const text = toPrometheus(
      [{ host: 'trivy-0', checks: [{ check: 'disk', name: 'disk', host: 'trivy-0', status: 'warn', detail: '', durationMs: 1 }], metrics: { dbAgeSeconds: 60, diskUsedRatio: 0.5, journal: { panics: 0 } } }],
      1_700_000_000_000,
    )
    expect(text).toContain('labctl_trivy_db_age_seconds{host="trivy-0"} 60')
    expect(text).toContain('labctl_trivy_check_status{host="trivy-0",check="disk"} 1')
    expect(text).toContain('labctl_trivy_check_timestamp_seconds 1700000000')
    expect(text).not.toContain('{}')
  })

  it('quotes remote argv so nothing is interpreted by the shell', () => {
    expect(shellQuote(['echo', "it's", '$(id)', 'a b'])).toBe(`echo 'it'\\''s' '$(id)' 'a b'`)
  })
})
