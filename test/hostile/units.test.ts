// The hostile-input suite, in process: the bounded reader, the terminal escaping, the URL rule, the
// HTTP body limits and TLS peers that misbehave — with tight time and memory bounds on the work itself.
import { execFileSync } from 'node:child_process'
import { closeSync, openSync, truncateSync, writeFileSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { afterAll, describe, expect, it } from 'vitest'
import { escapeTerminal, LabctlError, oneLine } from '../../src/errors.js'
import { FileReadError, readBounded } from '../../src/fs/read-bounded.js'
import { InventoryError, MAX_LISTED_PROBLEMS, parseInventory } from '../../src/inventory/load.js'
import { isHostName, isIpLiteral, urlProblem } from '../../src/inventory/schema.js'
import { httpRequest } from '../../src/net/http.js'
import { describeAnswer } from '../../src/trivy/api.js'
import { loadToken } from '../../src/trivy/token.js'
import { inspectTls } from '../../src/trivy/tls-check.js'
import { file, inventory, TEST_TOKEN, WORK } from './harness.js'
import { httpServer } from './responders.js'

const closers: Array<() => Promise<void> | void> = []
afterAll(async () => {
  for (const c of closers) await c()
})

function timed<T>(f: () => T): { value?: T; error?: unknown; ms: number; rssGrowthMb: number } {
  const rss0 = process.memoryUsage().rss
  const t0 = performance.now()
  try {
    const value = f()
    return { value, ms: performance.now() - t0, rssGrowthMb: (process.memoryUsage().rss - rss0) / 2 ** 20 }
  } catch (error) {
    return { error, ms: performance.now() - t0, rssGrowthMb: (process.memoryUsage().rss - rss0) / 2 ** 20 }
  }
}

describe('bounded reads, in process', () => {
  const refused: Array<[string, () => string, RegExp, number]> = [
    ['/dev/zero', () => '/dev/zero', /character device/, 200],
    ['/dev/urandom', () => '/dev/urandom', /character device/, 200],
    ['a directory', () => WORK, /is a directory/, 200],
    ['a missing file', () => join(WORK, 'none'), /no such file/, 200],
    ['a sparse 10 GiB file', () => {
      const p = join(WORK, 'sparse-unit')
      writeFileSync(p, '')
      truncateSync(p, 10 * 1024 ** 3)
      return p
    }, /larger than 256 KiB/, 200],
    ['a file one byte over the cap', () => file('over.yaml', 'a'.repeat(256 * 1024 + 1)), /larger than 256 KiB/, 500],
    ['a FIFO whose writer never writes', () => {
      const p = join(WORK, 'unit.fifo')
      execFileSync('mkfifo', [p])
      const fd = openSync(p, 'r+')
      closers.push(() => closeSync(fd))
      return p
    }, /nothing more arrived within 2000 ms/, 2600],
  ]
  for (const [name, path, match, ms] of refused) {
    it(`refuses ${name} as an inventory, exit 2, in under ${ms} ms, without growing`, () => {
      const r = timed(() => readBounded(path(), 'inventory'))
      expect(r.error).toBeInstanceOf(FileReadError)
      const e = r.error as FileReadError
      expect(e.message).toMatch(match)
      expect(e.exitCode).toBe(2)
      expect(e.suggestion).toBeTruthy()
      expect(e.message).not.toContain('\n')
      expect(r.ms).toBeLessThan(ms)
      expect(r.rssGrowthMb).toBeLessThan(20)
    })
  }
  it('reads a /proc file whose size says 0', () => {
    expect(readBounded('/proc/self/status', 'inventory').toString()).toMatch(/^Name:/)
  })
  it('accepts a file of exactly the cap', () => {
    expect(readBounded(file('exact.tok', 'a'.repeat(4096)), 'token').length).toBe(4096)
  })
  it('a token with a NUL byte is reported as such, never as "more than one line"', () => {
    expect(() => loadToken({ tokenFile: file('nul-unit.tok', `${TEST_TOKEN}\0x`), secretsDir: WORK, env: {} })).toThrow(/NUL byte/)
  })
  it('a missing --token-file names that file', () => {
    expect(() => loadToken({ tokenFile: join(WORK, 'gone.tok'), secretsDir: WORK, env: {} })).toThrow(/gone\.tok does not exist/)
  })
})

describe('validation errors: linear and capped', () => {
  it('250 KiB of unknown keys: the first 20 problems, then a count, in linear time', () => {
    const lines = [inventory().trimEnd()]
    for (let i = 0; lines.join('\n').length < 1; i++) lines.push('')
    let n = 0
    for (let i = 0; n < 250 * 1024; i++) {
      const l = `k${i}: 1`
      lines.push(l)
      n += l.length + 1
    }
    const r = timed(() => parseInventory(`${lines.join('\n')}\n`, 'big.yaml'))
    expect(r.error).toBeInstanceOf(InventoryError)
    const e = r.error as InventoryError
    expect(e.total).toBeGreaterThan(20_000)
    expect(e.details.length).toBe(MAX_LISTED_PROBLEMS)
    expect(e.details.at(-1)).toMatch(/^… and \d+ more problems$/)
    // yaml's own uniqueKeys check alone took ~20 s for 20 000 keys: quadratic. This is linear.
    expect(r.ms).toBeLessThan(10_000)
  })
  it('a YAML alias bomb is one usage error', () => {
    const bomb = ['a: &a [x,x,x,x,x,x,x,x,x]', 'b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]', 'c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]', 'd: [*c,*c,*c,*c,*c,*c,*c,*c,*c]'].join('\n')
    const r = timed(() => parseInventory(bomb, 'bomb.yaml'))
    expect((r.error as LabctlError).exitCode).toBe(2)
    expect((r.error as Error).message).toMatch(/alias bomb/)
    expect(r.ms).toBeLessThan(1000)
  })
})

describe('one rule per kind of value', () => {
  const urls: Array<[string, { schemes: string[]; path: boolean }, RegExp | undefined]> = [
    ['https://trivy.lab.test', { schemes: ['https', 'http'], path: false }, undefined],
    ['https://trivy.lab.test:8443/', { schemes: ['https', 'http'], path: false }, undefined],
    ['http://[fd00::1]:4954', { schemes: ['https', 'http'], path: false }, undefined],
    ['https://ci.lab.test/jenkins', { schemes: ['https'], path: true }, undefined],
    ['https://u:p@trivy.lab.test', { schemes: ['https'], path: false }, /user name or password/],
    ['https://@trivy.lab.test', { schemes: ['https'], path: false }, /user name or password/],
    ['https://trivy.lab.test/x', { schemes: ['https'], path: false }, /must not have a path/],
    ['https://trivy.lab.test#frag', { schemes: ['https'], path: false }, /query .* or fragment/],
    ['gopher://trivy.lab.test', { schemes: ['https'], path: false }, /scheme gopher/],
    ['https://', { schemes: ['https'], path: false }, /has no host/],
    ['https://999.1.1.1', { schemes: ['https'], path: false }, /not a valid host name or IP/],
    ['https://[::g]', { schemes: ['https'], path: false }, /not a valid IPv6/],
    ['https://trivy.lab.test:65536', { schemes: ['https'], path: false }, /out of range/],
    ['https://trivy.lab.test:99999999', { schemes: ['https'], path: false }, /valid host|out of range/],
    ['https://tri vy.lab.test', { schemes: ['https'], path: false }, /not a valid host name/],
    ['https://trivy.lab.test;rm -rf', { schemes: ['https'], path: false }, /not a valid host name/],
  ]
  for (const [u, o, want] of urls) {
    it(`URL ${JSON.stringify(u)} → ${want ? want.source : 'accepted'}`, () => {
      const p = urlProblem(u, o)
      if (want) expect(p).toMatch(want)
      else expect(p).toBeUndefined()
    })
  }
  it('IP literals as node:net reads them; numeric names refused', () => {
    expect(['10.0.0.1', '::1', 'fd00::53'].every(isIpLiteral)).toBe(true)
    expect(['999.1.1.1', '1.2.3', '010.0.0.1', '10.0.0.1 ', 'fe80::1%eth0', '0x7f.0.0.1'].some(isIpLiteral)).toBe(false)
    expect(isHostName('trivy-0.lab.test')).toBe(true)
    expect(['999.1.1.1', '10.0.0', '-a.lab', 'a..b', 'a b'].some(isHostName)).toBe(false)
  })
})

describe('terminal hygiene', () => {
  const cases: Array<[string, string]> = [
    ['ESC sequences', 'a\u001b[2Jb'],
    ['OSC title with BEL', '\u001b]0;owned\u0007'],
    ['bidi override (Trojan Source)', 'abc\u202edcba'],
    ['bidi isolates', '\u2066x\u2069'],
    ['C1 control CSI', 'a\u009bb'],
    ['backspace and CR overwrite', 'safe\rEVIL\b\b'],
    ['zero-width joiner', 'to\u200dken'],
  ]
  for (const [name, text] of cases) {
    it(`oneLine escapes ${name}`, () => {
      const out = oneLine(text)
      // eslint-disable-next-line no-control-regex
      expect(out).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2066-\u2069]/)
      expect(escapeTerminal(text)).toMatch(/\\u\{[0-9a-f]+\}/)
    })
  }
})

describe('hostile HTTP peers, in process', () => {
  it('a gzip bomb reports the decompressed bound, not the compressed size', async () => {
    const bomb = gzipSync(Buffer.alloc(32 * 1024 * 1024))
    const s = await httpServer((_q, res) => {
      res.writeHead(200, { 'content-encoding': 'gzip' })
      res.end(bomb)
    })
    closers.push(s.close)
    const rss0 = process.memoryUsage().rss
    await expect(httpRequest(`${s.url}/version`, { timeoutMs: 3000, maxBytes: 1024 * 1024 })).rejects.toThrow(/decompresses to more than 1048576 bytes/)
    expect((process.memoryUsage().rss - rss0) / 2 ** 20).toBeLessThan(64)
  })
  it('a body over the limit is cut off', async () => {
    const s = await httpServer((_q, res) => {
      res.writeHead(200)
      res.end(Buffer.alloc(3 * 1024 * 1024, 0x41))
    })
    closers.push(s.close)
    await expect(httpRequest(s.url, { timeoutMs: 3000, maxBytes: 1024 * 1024 })).rejects.toThrow(/larger than 1048576 bytes/)
  })
  it('a redirect shows its Location, redacted', () => {
    const d = describeAnswer({ status: 302, headers: { location: `http://evil.example/?t=${TEST_TOKEN}` }, body: '', durationMs: 1 }, [TEST_TOKEN])
    expect(d).toMatch(/HTTP 302 redirect to http:\/\/evil\.example\/\?t=(\*\*\*|\[REDACTED\])/)
    expect(d).not.toContain(TEST_TOKEN)
  })
  it('a server that never answers ends at the deadline', async () => {
    const s = await httpServer(() => {})
    closers.push(s.close)
    const t0 = performance.now()
    await expect(httpRequest(s.url, { timeoutMs: 300 })).rejects.toThrow()
    expect(performance.now() - t0).toBeLessThan(1500)
  })
})

describe('hostile TLS peers, in process', () => {
  const tcp = async (onConn: (s: import('node:net').Socket) => void): Promise<number> => {
    const conns = new Set<import('node:net').Socket>()
    const srv = createServer((c) => {
      conns.add(c)
      c.on('error', () => {})
      onConn(c)
    })
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()))
    closers.push(() => {
      for (const c of conns) c.destroy()
      return new Promise<void>((r) => srv.close(() => r()))
    })
    return (srv.address() as AddressInfo).port
  }
  const held: Array<import('node:net').Socket> = []
  closers.push(() => held.forEach((s) => s.destroy()))
  const cases: Array<[string, (s: import('node:net').Socket) => void]> = [
    ['plain HTTP on the TLS port', (s) => s.end('HTTP/1.1 400 Bad Request\r\n\r\n')],
    ['garbage bytes', (s) => s.end(Buffer.alloc(4096, 0xff))],
    ['an immediate close', (s) => s.destroy()],
    ['silence', (s) => held.push(s)],
  ]
  for (const [name, onConn] of cases) {
    it(`${name}: an error within the timeout`, async () => {
      const port = await tcp(onConn)
      const t0 = performance.now()
      await expect(inspectTls({ address: '127.0.0.1', port, servername: 'trivy.lab.test', timeoutMs: 500 })).rejects.toBeTruthy()
      expect(performance.now() - t0).toBeLessThan(1500)
    })
  }
})

describe('DNS server addresses', () => {
  it('every form the schema accepts is parsed to the right address and port', async () => {
    const { parseServer } = await import('../../src/net/dns.js')
    expect(parseServer('10.0.0.53')).toEqual({ host: '10.0.0.53', port: 53 })
    expect(parseServer('10.0.0.53:5353')).toEqual({ host: '10.0.0.53', port: 5353 })
    expect(parseServer('fd00::53')).toEqual({ host: 'fd00::53', port: 53 })
    expect(parseServer('[fd00::53]')).toEqual({ host: 'fd00::53', port: 53 })
    expect(parseServer('[fd00::53]:5353')).toEqual({ host: 'fd00::53', port: 5353 })
  })
})
