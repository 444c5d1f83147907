// A second, private sandbox: up, then down must leave no process and no port behind.
import { existsSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { isAlive, portOpen } from '../../src/sandbox/proc.js'
import { labctl, parseJson } from '../helpers.js'

describe('sandbox lifecycle', () => {
  it('down stops every process and frees every port; down again is harmless', async () => {
    const root = mkdtempSync(join(tmpdir(), 'labctl-life-'))
    const env = { XDG_CONFIG_HOME: join(root, 'config'), LABCTL_SANDBOX_DIR: join(root, 'sb') }
    const up = await labctl(['sandbox', 'up', '--json'], { env, timeoutMs: 120_000 })
    onTestFinished(async () => {
      await labctl(['sandbox', 'down'], { env })
    })
    expect(up.exitCode, up.stderr).toBe(0)
    const s = parseJson<{ components: Array<{ name: string; pid: number; port: number }> }>(up.stdout)
    expect(s.components.map((c: { name?: string }) => c.name)).toEqual(['registry', 'dns', 'host', 'trivy', 'haproxy'])
    const down = await labctl(['sandbox', 'down', '--json'], { env })
    expect(down.exitCode, down.stderr).toBe(0)
    expect(parseJson(down.stdout)).toMatchObject({ leftover: [] })
    for (const c of s.components) {
      expect(isAlive(c.pid)).toBe(false)
      expect(await portOpen(c.port)).toBe(false)
    }
    expect(existsSync(join(root, 'config', 'labctl', 'labs', 'sandbox.yaml'))).toBe(false)
    const again = await labctl(['sandbox', 'down'], { env })
    expect(again.exitCode).toBe(0)
    expect(again.stdout).toMatch(/was not running/)
    const status = await labctl(['sandbox', 'status'], { env })
    expect(status.exitCode).toBe(3)
  })
})
