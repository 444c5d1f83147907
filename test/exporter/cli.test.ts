// The built `labctl trivy exporter` as a process: starts, serves, stops on SIGTERM (exit 0) and SIGINT
// (exit 130) without leaving anything behind; the token is read from a file, never argv; bad flags exit 2.
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import { afterEach, describe, expect, it } from 'vitest'
import { freePorts } from '../../src/sandbox/proc.js'
import { LABCTL, labctl } from '../helpers.js'
import { startTestLab, TOKEN, type TestLab } from './lab.js'

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

async function startCli(l: TestLab, port: number) {
  const tokenFile = join(l.dir, 'token')
  writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 })
  const child = execa(LABCTL, ['trivy', 'exporter', '--config', l.loaded.path, '--listen', `127.0.0.1:${port}`, '--no-ssh', '--interval', '1', '--token-file', tokenFile], {
    reject: false,
    env: { ...process.env, NO_COLOR: '1', TRIVY_TOKEN: '' },
    stdin: 'ignore',
    timeout: 60_000,
  })
  cleanups.push(async () => void child.kill('SIGKILL'))
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()))
  const end = Date.now() + 20_000
  while (!stderr.includes('serving ') && Date.now() < end && child.exitCode === null) await new Promise((r) => setTimeout(r, 50))
  expect(stderr, stderr).toContain(`serving http://127.0.0.1:${port}/metrics`)
  return { child, stderr: () => stderr }
}

describe('labctl trivy exporter (the process)', () => {
  it('serves metrics, keeps the token out of its argv, and stops cleanly on SIGTERM', async () => {
    const l = await startTestLab()
    cleanups.push(l.close)
    const [port] = (await freePorts(1)) as [number]
    const { child, stderr } = await startCli(l, port)
    let text = ''
    const end = Date.now() + 10_000
    while (!(/canary_success\{host="edge"\} 1/.test(text) && /canary_success\{host="trivy-0"\} 1/.test(text)) && Date.now() < end) {
      text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(2000) })).text()
      await new Promise((r) => setTimeout(r, 100))
    }
    expect(text).toMatch(/^labctl_trivy_canary_success\{host="trivy-0"\} 1$/m)
    expect(text).not.toContain(TOKEN)
    expect(readFileSync(`/proc/${child.pid}/cmdline`, 'utf8')).not.toContain(TOKEN)
    const t = Date.now()
    child.kill('SIGTERM')
    const r = await child
    expect(Date.now() - t).toBeLessThan(5000)
    expect(r.exitCode, stderr()).toBe(0)
    expect(stderr()).toMatch(/SIGTERM: stopping\n.*stopped\n/)
    expect(stderr()).not.toContain(TOKEN)
    await expect(fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(1000) })).rejects.toThrow()
  })

  it('stops on SIGINT with exit 130', async () => {
    const l = await startTestLab()
    cleanups.push(l.close)
    const [port] = (await freePorts(1)) as [number]
    const { child, stderr } = await startCli(l, port)
    child.kill('SIGINT')
    const r = await child
    expect(r.exitCode, stderr()).toBe(130)
    expect(stderr()).toContain('SIGINT: stopping')
  })

  it('refuses bad input with exit 2 and a next step; a port in use is exit 1', async () => {
    const l = await startTestLab()
    cleanups.push(l.close)
    const bad = await labctl(['trivy', 'exporter', '--config', l.loaded.path, '--listen', 'nonsense'])
    expect(bad.exitCode).toBe(2)
    expect(String(bad.stderr)).toMatch(/--listen "nonsense" is not HOST:PORT\n\s+next: /)
    const stdin = await labctl(['trivy', 'exporter', '--config', l.loaded.path, '--token-file', '-'])
    expect(stdin.exitCode).toBe(2)
    const [port] = (await freePorts(1)) as [number]
    await startCli(l, port)
    writeFileSync(join(l.dir, 'token2'), TOKEN, { mode: 0o600 })
    const busy = await labctl(['trivy', 'exporter', '--config', l.loaded.path, '--no-ssh', '--listen', `127.0.0.1:${port}`, '--token-file', join(l.dir, 'token2')], { timeoutMs: 20_000 })
    expect(busy.exitCode).toBe(1)
    expect(String(busy.stderr)).toContain(`cannot listen on 127.0.0.1:${port}: the address is in use`)
  })

  it('--systemd prints the unit and starts nothing', async () => {
    const l = await startTestLab()
    cleanups.push(l.close)
    const r = await labctl(['trivy', 'exporter', '--config', l.loaded.path, '--systemd', '--listen', '10.0.0.20:9934'])
    expect(r.exitCode, String(r.stderr)).toBe(0)
    expect(String(r.stdout)).toMatch(/^User=labctl-exporter$/m)
    expect(String(r.stdout)).toMatch(/^ExecStart=.* --listen 10\.0\.0\.20:9934$/m)
    expect(String(r.stdout)).not.toContain(TOKEN)
  })
})
