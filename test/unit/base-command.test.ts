// The base command's prompts (no sandbox): every question goes to stderr, stdout carries results only.
import { Config } from '@oclif/core'
import { beforeAll, describe, expect, it, vi } from 'vitest'
import { LabctlCommand } from '../../commands/_base.js'
import { UsageError } from '../../src/errors.js'

const asked: Array<{ kind: string; message: string; output: unknown }> = []
let answer: unknown = true
vi.mock('@inquirer/prompts', () => ({
  confirm: vi.fn(async (q: { message: string }, ctx: { output?: unknown }) => {
    asked.push({ kind: 'confirm', message: q.message, output: ctx?.output })
    return answer
  }),
  input: vi.fn(async (q: { message: string }, ctx: { output?: unknown }) => {
    asked.push({ kind: 'input', message: q.message, output: ctx?.output })
    return answer
  }),
}))

type Flags = { yes?: boolean; 'no-prompt'?: boolean; json?: boolean }

class Probe extends LabctlCommand<{ ok: boolean }> {
  tty = true
  async run(): Promise<{ ok: boolean }> {
    return { ok: true }
  }
  protected override canPrompt(flags: Flags): boolean {
    return this.tty && !flags['no-prompt'] && !flags.json
  }
  ask = (flags: Flags) => this.confirm(flags, 'Apply?', 'install changes trivy-0', 'review the plan, then rerun with --yes')
  stopUnlessYes = (flags: Flags) => this.confirmOrStop(flags, 'Go?', 'restarting interrupts scans')
  typeName = (flags: Flags) => this.typeBack(flags, 'trivy-0', 'Type trivy-0:', 'reset-db stops trivy-0', 'rerun with --yes')
}

let config: Config
beforeAll(async () => {
  config = await Config.load({ root: process.cwd() })
})

describe('base command prompts', () => {
  it('asks on stderr (confirm and type-back), never on stdout', async () => {
    const p = new Probe([], config)
    asked.length = 0
    answer = true
    expect(await p.ask({})).toBe(true)
    await p.stopUnlessYes({})
    answer = 'trivy-0'
    await p.typeName({})
    expect(asked.map((a) => a.kind)).toEqual(['confirm', 'confirm', 'input'])
    for (const a of asked) expect(a.output).toBe(process.stderr)
  })

  it('--yes answers without asking; a "no" or a wrong name changes nothing', async () => {
    const p = new Probe([], config)
    asked.length = 0
    expect(await p.ask({ yes: true })).toBe(true)
    await p.typeName({ yes: true })
    expect(asked).toHaveLength(0)
    answer = false
    expect(await p.ask({})).toBe(false)
    await expect(p.stopUnlessYes({})).rejects.toThrow(/nothing was changed/)
    answer = 'trivy-1'
    await expect(p.typeName({})).rejects.toThrow(/"trivy-1" is not trivy-0: nothing was changed/)
  })

  it('without a terminal it is a usage error naming why, with a next step', async () => {
    const p = new Probe([], config)
    p.tty = false
    const err = await p.ask({}).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(UsageError)
    expect((err as UsageError).message).toBe('install changes trivy-0: confirmation needed')
    expect((err as UsageError).suggestion).toBe('review the plan, then rerun with --yes')
    expect((err as UsageError).exitCode).toBe(2)
  })
})

describe('commands', () => {
  it('prompt only through the base helpers or with output on stderr', async () => {
    const { readdirSync, readFileSync } = await import('node:fs')
    const { join } = await import('node:path')
    const files = (readdirSync('commands', { recursive: true }) as string[]).filter((f) => f.endsWith('.ts') && f !== '_base.ts')
    expect(files.length).toBeGreaterThan(10)
    const offenders: string[] = []
    for (const f of files) {
      const text = readFileSync(join('commands', f), 'utf8')
      if (!text.includes('@inquirer/prompts')) continue
      // Every prompt call (confirm/input/select/password(...)) names process.stderr as its output.
      const calls = text.match(/\b(confirm|input|select|password)\(\{[^)]*\)/g) ?? []
      for (const c of calls) if (!c.includes('output: process.stderr')) offenders.push(`${f}: ${c}`)
    }
    expect(offenders).toEqual([])
  })
})
