import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ROOT, labctl, parseJson } from '../helpers.js'

const tmp = mkdtempSync(join(tmpdir(), 'labctl-cli-'))
const write = (name: string, text: string): string => {
  const p = join(tmp, name)
  writeFileSync(p, text)
  return p
}

describe('labctl binary', () => {
  it('prints its version', async () => {
    const r = await labctl(['--version'])
    expect(r.exitCode).toBe(0)
    expect(r.stdout).toMatch(/^labctl\/0\.1\.0 /)
  })

  it('shows help with the exit-code table, and suggests a command for a typo', async () => {
    const r = await labctl(['config', 'validate', '--help'])
    expect(r.exitCode).toBe(0)
    expect(r.stdout).toMatch(/EXIT CODES/)
    expect(r.stdout).toMatch(/3 +checks ran and at least one failed/)
    const typo = await labctl(['trivy', 'valdate'])
    expect(typo.exitCode).toBe(127)
    expect(typo.stderr).toMatch(/"trivy valdate" is not a labctl command/)
    expect(typo.stderr).toMatch(/did you mean: labctl trivy validate/)
  })

  it('validates the example inventory', async () => {
    const r = await labctl(['config', 'validate', '--config', join(ROOT, 'examples', 'comptech-lab.yaml'), '--json'])
    expect(r.exitCode).toBe(0)
    expect(parseJson(r.stdout)).toMatchObject({ valid: true, lab: 'comptech-lab', hosts: ['trivy-0'] })
  })

  const broken: Array<[string, string, RegExp]> = [
    ['bad YAML', 'name: x\ndns:\n  servers: [1.2.3.4\n', /bad-yaml\.yaml:\d+:\d+: YAML syntax/],
    ['unknown key', 'name: x\ncolour: blue\n', /unknown-key\.yaml:2:1: colour: unknown key/],
    ['wrong type', 'name: x\ndns:\n  servers: 5\n', /wrong-type\.yaml:3:3: dns\.servers: wrong type: expected array/],
  ]
  for (const [what, text, pattern] of broken) {
    it(`rejects an inventory with ${what}: file, line, key, exit 2, no stack`, async () => {
      const file = write(`${what.replace(/ /g, '-').toLowerCase()}.yaml`, text)
      const r = await labctl(['config', 'validate', '--config', file])
      expect(r.exitCode).toBe(2)
      expect(r.stderr).toMatch(pattern)
      expect(r.stderr).not.toMatch(/\bat .+\.js:\d+/)
      expect(r.stdout).toBe('')
    })
  }

  it('rejects a missing inventory file with exit 2 and a next step, also as JSON', async () => {
    const r = await labctl(['config', 'show', '--config', join(tmp, 'nope.yaml'), '--json'])
    expect(r.exitCode).toBe(2)
    const out = parseJson<{ status: string; error: { code: string; message: string; suggestion: string } }>(r.stdout)
    expect(out.status).toBe('error')
    expect(out.error.code).toBe('BAD_INVENTORY')
    expect(out.error.message).toMatch(/nope\.yaml:0:0: cannot read inventory: no such file/)
    expect(out.error.suggestion).toMatch(/--config/)
  })

  it('accepts global flags before the command (labctl --lab NAME trivy validate)', async () => {
    const r = await labctl(['--config', join(ROOT, 'examples', 'comptech-lab.yaml'), '--json', 'config', 'validate'])
    expect(r.exitCode, r.stderr).toBe(0)
    expect(parseJson(r.stdout)).toMatchObject({ valid: true, lab: 'comptech-lab' })
  })

  it('reads flags from LABCTL_* variables', async () => {
    const r = await labctl(['config', 'validate'], { env: { LABCTL_CONFIG: join(ROOT, 'examples', 'comptech-lab.yaml') } })
    expect(r.exitCode).toBe(0)
    const lab = await labctl(['config', 'validate'], { env: { LABCTL_LAB: 'no-such-lab', XDG_CONFIG_HOME: tmp } })
    expect(lab.exitCode).toBe(2)
    expect(lab.stderr).toMatch(/labs\/no-such-lab\.yaml/)
  })

  it('exits 2 on an unknown flag, a repeated flag or a bad value', async () => {
    const r = await labctl(['config', 'validate', '--bogus'])
    expect(r.exitCode).toBe(2)
    expect(r.stderr).toMatch(/Nonexistent flag: --bogus/)
    const twice = await labctl(['trivy', 'validate', '--timeout', '1', '--timeout', '2'])
    expect(twice.exitCode).toBe(2)
    expect(twice.stderr).toMatch(/can only be specified once/)
    const bad = await labctl(['trivy', 'validate', '--timeout', 'soon'])
    expect(bad.exitCode).toBe(2)
  })
})

describe('help', () => {
  it('answers `CMD --help` from the manifest with the same flags oclif knows', async () => {
    const fast = await labctl(['config', 'show', '--help'])
    const full = await labctl(['help', 'config', 'show'])
    expect(fast.exitCode).toBe(0)
    expect(full.exitCode).toBe(0)
    for (const flag of ['--json', '--lab', '--config', '--yes', '--no-prompt']) {
      expect(fast.stdout).toContain(flag)
      expect(full.stdout).toContain(flag)
    }
    expect(fast.stdout).toMatch(/\[env: LABCTL_CONFIG\]/)
  })
})
