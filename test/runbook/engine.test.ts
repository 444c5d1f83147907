// The executor with a stand-in for labctl: flow control, diagnosis, confirmations, dry run, resume,
// redaction and the transcript, without a sandbox.
import { mkdtempSync, readFileSync, existsSync, writeFileSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { executeRunbook, type Runner, type RunnerResult, type Prompter } from '../../src/runbook/engine.js'
import { parseRunbook } from '../../src/runbook/parse.js'
import { findResumable, readState } from '../../src/runbook/state.js'
import { findingsOf, valuesAt, evaluate } from '../../src/runbook/conditions.js'
import { redactText, redactJson } from '../../src/runbook/redact.js'
import { splitCommand } from '../../src/runbook/argv.js'
import type { LoadedRunbook } from '../../src/runbook/schema.js'
import { LabctlError, UsageError } from '../../src/errors.js'

const TOKEN = 'tok_9f8e7d6c5b4a39281706f5e4d3c2b1a0'

const load = (text: string): LoadedRunbook => ({ runbook: parseRunbook(text, '<test>'), file: '<test>', sha256: 'x', source: 'file' })
const root = () => mkdtempSync(join(tmpdir(), 'labctl-rb-engine-'))

type Canned = Partial<RunnerResult> & { json?: unknown }
/** A labctl stand-in: answers by the command's first two words; records every argv. */
function fake(answers: Record<string, Canned | ((argv: string[], n: number) => Canned)>) {
  const calls: string[][] = []
  const count = new Map<string, number>()
  const runner: Runner = async (argv) => {
    calls.push(argv)
    const key = argv.filter((a) => !a.startsWith('-')).slice(0, 2).join(' ')
    const n = (count.get(key) ?? 0) + 1
    count.set(key, n)
    const a = answers[key]
    if (!a) return { exitCode: 127, stdout: '', stderr: `${key} is not a labctl command`, interrupted: false, timedOut: false }
    const c = typeof a === 'function' ? a(argv, n) : a
    return { exitCode: c.exitCode ?? 0, stdout: c.stdout ?? (c.json !== undefined ? JSON.stringify(c.json) : ''), stderr: c.stderr ?? '', interrupted: c.interrupted ?? false, timedOut: c.timedOut ?? false }
  }
  return { runner, calls }
}

const checks = (...cs: Array<[string, string, string, string?]>) => ({
  ok: cs.every((c) => c[2] === 'pass'),
  checks: cs.map(([check, name, status, detail]) => ({ check, name, host: 'trivy-0', status, detail: detail ?? '' })),
})

const RB = `
name: t
title: Test runbook
symptom: something is wrong
causes:
  db-corrupt: the DB is corrupted
  fine: nothing wrong
steps:
  - id: probe
    type: check
    title: probe
    run: trivy check
  - id: diagnose
    type: diagnosis
    title: which?
    cases:
      - cause: db-corrupt
        when:
          - finding: { step: probe, check: db-file, detail: corrupted }
        goto: fix
    otherwise: { cause: fine, goto: verify }
  - id: fix
    type: action
    title: fix it on {{host}}
    run: trivy reset-db
    confirm: Reset {{host}}?
  - id: ask
    type: manual
    title: look at it
    instructions: Look at {{publicUrl}} with TRIVY_TOKEN=${TOKEN} in hand
  - id: verify
    type: check
    title: verify
    run: trivy validate
    require: pass
`

const corrupt = { exitCode: 3, json: checks(['db-file', 'db file', 'fail', 'trivy.db is not a bbolt database (bad magic): corrupted'], ['disk', 'disk', 'pass']) }
const healthy = { exitCode: 0, json: checks(['scan', 'scan canary', 'pass', `token accepted`]) }

describe('runbook executor', () => {
  it('walks check → diagnosis → action → manual → verify, names the cause, passes --lab/--host/--yes/--json', async () => {
    const { runner, calls } = fake({ 'trivy check': corrupt, 'trivy reset-db': { json: { results: [] } }, 'trivy validate': healthy })
    const r = await executeRunbook({ loaded: load(RB), runner, lab: 'sandbox', host: 'trivy-0', yes: true, stateRoot: root(), inventoryVars: { publicUrl: 'https://trivy.example' } })
    expect(r.status).toBe('completed')
    expect(r.exitCode).toBe(0)
    expect(r.cause).toEqual({ id: 'db-corrupt', description: 'the DB is corrupted' })
    expect(r.verified).toBe(true)
    expect(r.steps.map((s) => `${s.id}:${s.outcome}`)).toEqual(['probe:problems', 'diagnose:diagnosed', 'fix:done', 'ask:acknowledged', 'verify:passed'])
    expect(calls[0]).toEqual(['trivy', 'check', '--json', '--lab', 'sandbox', '--host', 'trivy-0'])
    expect(calls[1]).toEqual(['trivy', 'reset-db', '--json', '--lab', 'sandbox', '--host', 'trivy-0', '--yes'])
    expect(r.steps[1]!.evidence![0]).toMatchObject({ step: 'probe', name: 'db file', detail: expect.stringMatching(/corrupted/) })
    expect(r.steps[2]!.title).toBe('fix it on trivy-0')
    expect(r.steps[2]!.confirmedBy).toBe('--yes')
  })

  it('takes the otherwise branch when no case matches', async () => {
    const { runner, calls } = fake({ 'trivy check': { json: checks(['db-file', 'db file', 'pass']) }, 'trivy validate': healthy })
    const r = await executeRunbook({ loaded: load(RB), runner, yes: true, stateRoot: root() })
    expect(r.cause?.id).toBe('fine')
    expect(r.steps.map((s) => s.id)).toEqual(['probe', 'diagnose', 'verify'])
    expect(calls.some((c) => c[1] === 'reset-db')).toBe(false)
  })

  it('stops on a failed action by default (exit 1); a failed required check exits 3', async () => {
    const a = fake({ 'trivy check': corrupt, 'trivy reset-db': { exitCode: 1, json: { status: 'error', exitCode: 1, error: { code: 'X', message: 'ssh: connection refused', suggestion: 'check sshd' } } } })
    const r1 = await executeRunbook({ loaded: load(RB), runner: a.runner, yes: true, stateRoot: root() })
    expect(r1).toMatchObject({ status: 'failed', exitCode: 1, stoppedAt: 'fix', cause: { id: 'db-corrupt' } })
    expect(r1.steps.at(-1)).toMatchObject({ id: 'fix', outcome: 'failed', summary: 'ssh: connection refused (next: check sshd)', handler: 'stopped the run' })

    const b = fake({ 'trivy check': corrupt, 'trivy reset-db': {}, 'trivy validate': { exitCode: 3, json: checks(['scan', 'scan canary', 'fail', 'token rejected (401)']) } })
    const r2 = await executeRunbook({ loaded: load(RB), runner: b.runner, yes: true, stateRoot: root() })
    expect(r2).toMatchObject({ status: 'failed', exitCode: 3, verified: false, stoppedAt: 'verify' })
  })

  it('on_failure continue and goto', async () => {
    const rb = RB.replace('    run: trivy reset-db\n', '    run: trivy reset-db\n    on_failure: { goto: verify }\n')
    const { runner } = fake({ 'trivy check': corrupt, 'trivy reset-db': { exitCode: 1, stderr: 'boom' }, 'trivy validate': healthy })
    const r = await executeRunbook({ loaded: load(rb), runner, yes: true, stateRoot: root() })
    expect(r.steps.map((s) => `${s.id}:${s.outcome}`)).toEqual(['probe:problems', 'diagnose:diagnosed', 'fix:failed', 'verify:passed'])
    expect(r.steps[2]!.handler).toBe('went to verify')
    expect(r.status).toBe('completed')

    const rb2 = RB.replace('    run: trivy check\n', '    run: trivy check\n    on_failure: continue\n')
    const f2 = fake({ 'trivy check': { exitCode: 1, stderr: 'no route to host' }, 'trivy validate': healthy })
    const r2 = await executeRunbook({ loaded: load(rb2), runner: f2.runner, yes: true, stateRoot: root() })
    expect(r2.steps[0]).toMatchObject({ outcome: 'failed', handler: 'continued with the next step', summary: expect.stringMatching(/no route to host/) })
    expect(r2.cause?.id).toBe('fine')
  })

  it('an unknown labctl command (exit 127) is reported as such', async () => {
    const { runner } = fake({ 'trivy check': corrupt })
    const r = await executeRunbook({ loaded: load(RB), runner, yes: true, stateRoot: root() })
    expect(r.steps.at(-1)!.summary).toMatch(/labctl does not have this command \(exit 127\)/)
  })

  it('without --yes and without a terminal, an action waits for a confirmation (exit 2); --resume --yes continues there', async () => {
    const state = root()
    const { runner, calls } = fake({ 'trivy check': corrupt, 'trivy reset-db': {}, 'trivy validate': healthy })
    const r = await executeRunbook({ loaded: load(RB), runner, stateRoot: state })
    expect(r).toMatchObject({ status: 'needs-confirmation', exitCode: 2, stoppedAt: 'fix' })
    expect(calls.some((c) => c[1] === 'reset-db')).toBe(false)
    const resume = findResumable(state, 't')
    expect(resume.next).toBe('fix')
    const r2 = await executeRunbook({ loaded: load(RB), runner, stateRoot: state, resume, yes: true })
    expect(r2.status).toBe('completed')
    expect(r2.resumed).toBe(true)
    expect(r2.runId).toBe(r.runId)
    expect(r2.steps.map((s) => `${s.id}:${s.outcome}`)).toEqual(['probe:problems', 'diagnose:diagnosed', 'fix:needs-confirmation', 'fix:done', 'ask:acknowledged', 'verify:passed'])
    expect(calls.filter((c) => c[1] === 'check')).toHaveLength(1)
    expect(() => findResumable(state, 't')).toThrow(/no unfinished run/)
  })

  it('asks the operator: yes runs, no stops the run (declined)', async () => {
    const asked: string[] = []
    const shown: string[] = []
    const prompter = (answer: boolean): Prompter => ({ show: (t) => shown.push(t), confirm: async (m) => (asked.push(m), answer) })
    const { runner } = fake({ 'trivy check': corrupt, 'trivy reset-db': {}, 'trivy validate': healthy })
    const ok = await executeRunbook({ loaded: load(RB), runner, prompter: prompter(true), host: 'trivy-0', stateRoot: root(), inventoryVars: { publicUrl: 'https://trivy.example' } })
    expect(ok.status).toBe('completed')
    expect(asked).toEqual(['Reset trivy-0?', 'Done?'])
    expect(ok.steps.find((s) => s.id === 'ask')).toMatchObject({ outcome: 'confirmed', confirmedBy: 'operator' })
    expect(shown.join('\n')).toMatch(/Look at https:\/\/trivy\.example/)
    asked.length = 0
    const no = await executeRunbook({ loaded: load(RB), runner, prompter: prompter(false), stateRoot: root() })
    expect(no).toMatchObject({ status: 'stopped', exitCode: 1, stoppedAt: 'fix' })
  })

  it('--dry-run runs the checks and the diagnosis, plans the action, and only plans the checks after it', async () => {
    const { runner, calls } = fake({ 'trivy check': corrupt, 'trivy reset-db': {}, 'trivy validate': healthy })
    const r = await executeRunbook({ loaded: load(RB), runner, dryRun: true, stateRoot: root() })
    expect(r).toMatchObject({ status: 'planned', exitCode: 0, dryRun: true, cause: { id: 'db-corrupt' } })
    expect(r.steps.map((s) => `${s.id}:${s.outcome}`)).toEqual(['probe:problems', 'diagnose:diagnosed', 'fix:planned', 'ask:planned', 'verify:planned'])
    expect(calls.map((c) => c[1])).toEqual(['check'])
  })

  it('retries a required check while its condition holds, and not otherwise', async () => {
    const rb = RB.replace('    require: pass\n', `    require: pass
    retry:
      for: 10
      every: 0.01
      while:
        - finding: { name: via HAProxy, detail: backend down }
`)
    const lag = (_: string[], n: number) => (n < 3 ? { exitCode: 3, json: checks(['healthz', 'healthz via HAProxy', 'fail', 'backend down: HAProxy answered 503']) } : healthy)
    const a = fake({ 'trivy check': corrupt, 'trivy reset-db': {}, 'trivy validate': lag })
    const r = await executeRunbook({ loaded: load(rb), runner: a.runner, yes: true, stateRoot: root() })
    expect(r.steps.at(-1)).toMatchObject({ id: 'verify', outcome: 'passed', attempts: 3 })
    const other = () => ({ exitCode: 3, json: checks(['dns', 'dns trivy', 'fail', 'NXDOMAIN']) })
    const b = fake({ 'trivy check': corrupt, 'trivy reset-db': {}, 'trivy validate': other })
    const r2 = await executeRunbook({ loaded: load(rb), runner: b.runner, yes: true, stateRoot: root() })
    expect(r2.steps.at(-1)).toMatchObject({ id: 'verify', outcome: 'failed' })
    expect(b.calls.filter((c) => c[1] === 'validate')).toHaveLength(1)
  })

  it('an interruption mid-step saves the state; --resume re-runs that step and keeps the earlier ones', async () => {
    const state = root()
    const ac = new AbortController()
    const slow: Runner = async (argv, { signal }) => {
      if (argv[1] === 'reset-db') {
        setTimeout(() => ac.abort(), 10)
        await new Promise((res) => signal.addEventListener('abort', res, { once: true }))
        return { exitCode: 130, stdout: '', stderr: 'interrupted', interrupted: true, timedOut: false }
      }
      return fake({ 'trivy check': corrupt, 'trivy validate': healthy }).runner(argv, { signal, timeoutMs: 1000 })
    }
    const r = await executeRunbook({ loaded: load(RB), runner: slow, yes: true, stateRoot: state, signal: ac.signal })
    expect(r).toMatchObject({ status: 'interrupted', exitCode: 130, stoppedAt: 'fix' })
    const saved = readState(r.state)!
    expect(saved).toMatchObject({ status: 'interrupted', next: 'fix', cause: 'db-corrupt' })
    const { runner, calls } = fake({ 'trivy reset-db': {}, 'trivy validate': healthy })
    const r2 = await executeRunbook({ loaded: load(RB), runner, yes: true, stateRoot: state, resume: findResumable(state, 't') })
    expect(r2.status).toBe('completed')
    expect(calls.map((c) => c[1])).toEqual(['reset-db', 'validate'])
    expect(r2.steps.map((s) => `${s.id}:${s.outcome}`)).toEqual(['probe:problems', 'diagnose:diagnosed', 'fix:interrupted', 'fix:done', 'ask:acknowledged', 'verify:passed'])
    expect(r2.cause?.id).toBe('db-corrupt')
  })

  it('redacts the token and TRIVY_TOKEN=… from the transcript and the state file', async () => {
    const leaky = {
      exitCode: 3,
      json: { ...checks(['db-file', 'db file', 'fail', `corrupted; env TRIVY_TOKEN=${TOKEN} token=${TOKEN}`]), token: 'abc123456789' },
      stderr: `Trivy-Token: ${TOKEN}`,
    }
    const { runner } = fake({ 'trivy check': leaky, 'trivy reset-db': { exitCode: 1, stderr: `failed with TRIVY_TOKEN=other-secret-value and ${TOKEN}` } })
    const state = root()
    const r = await executeRunbook({ loaded: load(RB), runner, yes: true, stateRoot: state, secrets: [TOKEN] })
    const all = [readFileSync(r.transcript.markdown, 'utf8'), readFileSync(r.transcript.json, 'utf8'), readFileSync(r.state, 'utf8')].join('\n')
    expect(all).not.toContain(TOKEN)
    expect(all).not.toContain('other-secret-value')
    expect(all).not.toContain('abc123456789')
    expect(all).toContain('TRIVY_TOKEN=[REDACTED]')
    expect(r.steps.find((s) => s.id === 'fix')!.summary).toContain('[REDACTED]')
  })

  it('writes the transcript as Markdown and JSON (to --transcript DIR when given)', async () => {
    const dir = join(root(), 'incident')
    const { runner } = fake({ 'trivy check': corrupt, 'trivy reset-db': {}, 'trivy validate': healthy })
    const r = await executeRunbook({ loaded: load(RB), runner, yes: true, stateRoot: root(), transcriptDir: dir, lab: 'sandbox' })
    expect(r.transcript).toEqual({ markdown: join(dir, `${r.runId}.md`), json: join(dir, `${r.runId}.json`) })
    const md = readFileSync(r.transcript.markdown, 'utf8')
    expect(md).toMatch(/^# Incident record: t — Test runbook/)
    expect(md).toMatch(/\| cause \| \*\*db-corrupt\*\* — the DB is corrupted \|/)
    expect(md).toMatch(/\| \d\d:\d\d:\d\d \| fix \| action \| done \|/)
    expect(md).toContain('command: `labctl trivy reset-db --json --lab sandbox --yes`')
    const json = JSON.parse(readFileSync(r.transcript.json, 'utf8'))
    expect(json).toMatchObject({ runbook: 't', runId: r.runId, status: 'completed', lab: 'sandbox', cause: { id: 'db-corrupt' } })
    for (const s of json.steps) expect(s).toMatchObject({ id: expect.any(String), startedAt: expect.any(String), outcome: expect.any(String), durationMs: expect.any(Number) })
    expect(json.steps[0].output.checks[0].detail).toMatch(/corrupted/)
    expect(existsSync(r.state)).toBe(true)
  })

  it('skips a step whose command needs a --var that was not given; flags go before --', async () => {
    const rb = `
name: v
title: vars
symptom: s
causes: { x: x }
steps:
  - { id: scan, type: check, title: scan, run: 'trivy validate --image {{image}}' }
  - { id: clean, type: action, title: clean, run: 'trivy exec -- clean --scan-cache' }
`
    const { runner, calls } = fake({ 'trivy exec': {}, 'trivy validate': healthy })
    const r = await executeRunbook({ loaded: load(rb), runner, yes: true, stateRoot: root(), lab: 'l' })
    expect(r.steps[0]).toMatchObject({ outcome: 'skipped', summary: 'skipped: needs --var image=…' })
    expect(calls).toEqual([['trivy', 'exec', '--json', '--lab', 'l', '--yes', '--', 'clean', '--scan-cache']])
    const f2 = fake({ 'trivy exec': {}, 'trivy validate': healthy })
    await executeRunbook({ loaded: load(rb), runner: f2.runner, yes: true, stateRoot: root(), vars: { image: 'reg/app:1' } })
    expect(f2.calls[0]).toEqual(['trivy', 'validate', '--image', 'reg/app:1', '--json'])
  })

  it('a second diagnosis without a cause keeps the first one; cases with the same cause keep their own goto', async () => {
    const rb = `
name: two
title: two diagnoses
symptom: s
causes: { full: disk full, other: other }
steps:
  - { id: a, type: check, title: a, run: trivy check }
  - id: d1
    type: diagnosis
    title: d1
    cases:
      - { cause: full, when: [ { finding: { check: disk, status: warn } } ], goto: warn-path }
      - { cause: full, when: [ { finding: { check: disk } } ], goto: fail-path }
  - { id: warn-path, type: check, title: w, run: trivy status, next: d2 }
  - { id: fail-path, type: check, title: f, run: trivy validate }
  - id: d2
    type: diagnosis
    title: d2
    cases: [ { cause: other, when: [ { finding: { step: a, check: nothing } } ] } ]
    otherwise: { goto: end, note: fixed }
`
    const { runner } = fake({ 'trivy check': { exitCode: 3, json: checks(['disk', 'disk', 'fail', '99%']) }, 'trivy validate': healthy, 'trivy status': { json: { hosts: [] } } })
    const r = await executeRunbook({ loaded: load(rb), runner, yes: true, stateRoot: root() })
    expect(r.steps.map((s) => `${s.id}:${s.outcome}`)).toEqual(['a:problems', 'd1:diagnosed', 'fail-path:passed', 'd2:undiagnosed'])
    expect(r.cause?.id).toBe('full')
    expect(r.steps.at(-1)!.summary).toBe('no case matched; the cause stays full — fixed')
  })

  it('a goto loop is cut off', async () => {
    const rb = `
name: loop
title: loop
symptom: s
causes: { x: x }
steps:
  - { id: a, type: check, title: a, run: trivy check, next: b }
  - { id: b, type: check, title: b, run: trivy check, next: a }
`
    const { runner } = fake({ 'trivy check': { json: checks() } })
    const r = await executeRunbook({ loaded: load(rb), runner, yes: true, stateRoot: root(), maxSteps: 10 })
    expect(r.status).toBe('failed')
    expect(r.warnings[0]).toMatch(/loop/)
  })
})

describe('hostile runbooks and user mistakes', () => {
  const captured = async (p: Promise<unknown>): Promise<LabctlError> => {
    try {
      await p
    } catch (err) {
      return err as LabctlError
    }
    throw new Error('expected the run to be refused')
  }

  it('resuming a run whose step was removed from the runbook is a LabctlError with a next step (not a bug)', async () => {
    const state = root()
    const { runner } = fake({ 'trivy check': corrupt })
    const r = await executeRunbook({ loaded: load(RB), runner, stateRoot: state })
    expect(r).toMatchObject({ status: 'needs-confirmation', stoppedAt: 'fix' })
    const edited = RB.replace(/  - id: fix\n[\s\S]*?(?=  - id: ask)/, '').replace('goto: fix', 'goto: ask')
    const err = await captured(executeRunbook({ loaded: load(edited), runner, yes: true, stateRoot: state, resume: findResumable(state, 't') }))
    expect(err).toBeInstanceOf(LabctlError)
    expect(err).toMatchObject({ exitCode: 2, code: 'RUNBOOK_CHANGED' })
    expect(err.message).toMatch(/stopped at step "fix", which <test> no longer has/)
    expect(err.suggestion).toMatch(/start a new run: `labctl runbook run t`/)
  })

  it('a --transcript that is a device, under a file, or under a missing directory is a usage error before anything runs', async () => {
    const base = root()
    const file = join(base, 'plain-file')
    writeFileSync(file, 'x')
    const cases: Array<[string, RegExp]> = [
      ['/dev/null', /^the transcript directory \/dev\/null \(--transcript\) is a character device, not a directory$/],
      [file, /is a file, not a directory/],
      [join(file, 'sub'), /is under a file, not a directory/],
      [join(base, 'missing', 'deeper'), /does not exist, nor does its parent .*missing/],
    ]
    for (const [dir, msg] of cases) {
      const { runner, calls } = fake({ 'trivy check': corrupt })
      const err = await captured(executeRunbook({ loaded: load(RB), runner, yes: true, stateRoot: root(), transcriptDir: dir }))
      expect(err, dir).toBeInstanceOf(LabctlError)
      expect(err.exitCode, dir).toBe(2)
      expect(err.code).toBe('BAD_TRANSCRIPT_DIR')
      expect(err.message, dir).toMatch(msg)
      expect(err.suggestion).toBeTruthy()
      expect(calls, dir).toEqual([])
      expect(existsSync(join(base, 'missing'))).toBe(false)
    }
    // A new directory in an existing one is created (private) and takes the transcript.
    const { runner } = fake({ 'trivy check': corrupt, 'trivy reset-db': {}, 'trivy validate': healthy })
    const fresh = join(base, 'incident-42')
    const r = await executeRunbook({ loaded: load(RB), runner, yes: true, stateRoot: root(), transcriptDir: fresh })
    expect(r.transcript.markdown).toBe(join(fresh, `${r.runId}.md`))
    expect(statSync(fresh).mode & 0o777).toBe(0o700)
    expect(statSync(r.transcript.json).mode & 0o777).toBe(0o600)
  })

  it('a state dir that cannot be written is a LabctlError naming it (exit 1), before any step runs', async () => {
    const file = join(root(), 'not-a-dir')
    writeFileSync(file, 'x')
    const { runner, calls } = fake({ 'trivy check': corrupt })
    const err = await captured(executeRunbook({ loaded: load(RB), runner, yes: true, stateRoot: file }))
    expect(err).toBeInstanceOf(LabctlError)
    expect(err).toMatchObject({ exitCode: 1, code: 'LOCAL_WRITE' })
    expect(err.message).toMatch(new RegExp(`^cannot create the directory ${file}/t-`))
    expect(err.suggestion).toMatch(/XDG_STATE_HOME/)
    expect(calls).toEqual([])
  })

  it('Ctrl-C while a check waits to retry ends the run as interrupted (exit 130), resumable at that step', async () => {
    const rb = RB.replace('    require: pass\n', '    require: pass\n    retry: { for: 600, every: 60 }\n')
    const ac = new AbortController()
    const { runner } = fake({ 'trivy check': corrupt, 'trivy reset-db': {}, 'trivy validate': { exitCode: 1, stderr: 'connection refused' } })
    const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
      new Promise((res) => {
        const t = setTimeout(res, ms)
        signal.addEventListener('abort', () => (clearTimeout(t), res()), { once: true })
        setTimeout(() => ac.abort(), 20)
      })
    const t0 = performance.now()
    const r = await executeRunbook({ loaded: load(rb), runner, yes: true, stateRoot: root(), signal: ac.signal, sleep })
    expect(performance.now() - t0).toBeLessThan(5000)
    expect(r).toMatchObject({ status: 'interrupted', exitCode: 130, stoppedAt: 'verify' })
    expect(r.steps.at(-1)).toMatchObject({ id: 'verify', outcome: 'interrupted' })
    expect(readState(r.state)).toMatchObject({ status: 'interrupted', next: 'verify' })
  })

  it('a catastrophic pattern in a diagnosis does not hang the run, and Ctrl-C still ends it (130)', async () => {
    // `(a+)+$` on 28 a's and a "b" takes a backtracking RegExp about 10 s, blocking Ctrl-C all along.
    const rb = RB.replace('          - finding: { step: probe, check: db-file, detail: corrupted }', () => "          - value: { step: probe, path: checks.*.detail, matches: '(a+)+$' }")
    const evil = { exitCode: 3, json: checks(['db-file', 'db file', 'fail', `${'a'.repeat(28)}b`]) }
    const ac = new AbortController()
    const calls: string[] = []
    const runner: Runner = async (argv, { signal }) => {
      calls.push(argv[1]!)
      if (argv[1] === 'check') {
        // Ctrl-C arrives 30 ms later: while the diagnosis evaluates, or while the next step runs.
        setTimeout(() => ac.abort(), 30)
        return { exitCode: 3, stdout: JSON.stringify(evil.json), stderr: '', interrupted: false, timedOut: false }
      }
      await new Promise((res) => (signal.aborted ? res(undefined) : signal.addEventListener('abort', res, { once: true })))
      return { exitCode: 130, stdout: '', stderr: 'interrupted', interrupted: true, timedOut: false }
    }
    const t0 = performance.now()
    const r = await executeRunbook({ loaded: load(rb), runner, yes: true, stateRoot: root(), signal: ac.signal })
    const took = performance.now() - t0
    expect(took).toBeLessThan(3000)
    expect(r.steps.map((x) => `${x.id}:${x.outcome}`)).toEqual(['probe:problems', 'diagnose:undiagnosed', 'verify:interrupted'])
    expect(r).toMatchObject({ status: 'interrupted', exitCode: 130, stoppedAt: 'verify' })
    expect(calls).toEqual(['check', 'validate'])
  })

  it('--dry-run executes nothing but read-only checks: a state-changing "check" (however it got in) is refused, not run', async () => {
    // Built without the parser (which refuses it): the executor checks again, with the placeholders filled.
    const rb = load(RB)
    const probe = rb.runbook.steps[0]!
    if (probe.type !== 'check') throw new Error('fixture')
    probe.run = 'trivy reset-db --yes'
    const verify = rb.runbook.steps.find((s) => s.id === 'verify')!
    if (verify.type !== 'check') throw new Error('fixture')
    verify.run = 'trivy validate --image {{image}}'
    for (const dryRun of [true, false]) {
      const { runner, calls } = fake({ 'trivy check': corrupt, 'trivy reset-db': {}, 'trivy validate': healthy })
      const r = await executeRunbook({ loaded: rb, runner, dryRun, yes: true, stateRoot: root(), vars: { image: '--junit=/tmp/owned.xml' } })
      expect(calls.filter((c) => c[1] === 'reset-db'), `dryRun=${dryRun}`).toEqual([])
      expect(r.steps[0]).toMatchObject({ id: 'probe', outcome: 'failed', summary: expect.stringMatching(/refused to run a check that is not read-only: "trivy reset-db" may change state/) })
    }
    // A placeholder value cannot smuggle a flag into a check.
    const { runner, calls } = fake({ 'trivy validate': healthy })
    const only = load(`
name: v
title: v
symptom: s
causes: { x: x }
steps:
  - { id: verify, type: check, title: v, run: 'trivy validate --image {{image}}' }
`)
    const r = await executeRunbook({ loaded: only, runner, yes: true, stateRoot: root(), vars: { image: '--junit=/tmp/owned.xml' } })
    expect(calls).toEqual([])
    expect(r.steps[0]!.summary).toMatch(/the value of --image \("--junit=\/tmp\/owned\.xml"\) looks like a flag/)
  })
})

describe('findings and conditions', () => {
  it('reads trivy status as unit, pin and problem findings, and an error envelope as an error finding', () => {
    const status = { ok: false, hosts: [{ host: 'trivy-0', unit: { active: 'inactive', sub: 'dead' }, installed: '0.73.0', pinned: '0.74.0', versionMatchesPin: false, server: { version: '0.73.0' }, problems: ['trivy-server is inactive (dead)'] }] }
    const f = findingsOf('s', status)
    expect(f.map((x) => `${x.check}:${x.status}:${x.detail}`)).toEqual(['unit:fail:inactive (dead)', 'pin:fail:installed 0.73.0, pin 0.74.0, running 0.73.0', 'problem:fail:trivy-server is inactive (dead)'])
    expect(findingsOf('s', { status: 'error', exitCode: 1, error: { code: 'SSH_REFUSED', message: 'connection refused' } })).toEqual([
      { step: 's', check: 'error', name: 'SSH_REFUSED', host: '', status: 'fail', detail: 'connection refused' },
    ])
    expect(valuesAt(status, 'hosts.*.unit.active')).toEqual(['inactive'])
    const results = { s: { step: 's', type: 'check', exitCode: 3, outcome: 'problems', json: status, findings: f } }
    expect(evaluate({ value: { step: 's', path: 'hosts.*.unit.active', equals: 'inactive' } }, { results })).toBe(true)
    expect(evaluate({ all: [{ exit: { step: 's', code: [1, 3] } }, { not: { finding: { check: 'unit', status: 'pass' } } }] }, { results })).toBe(true)
    expect(evaluate({ outcome: { step: 'nope', is: 'passed' } }, { results })).toBe(false)
  })

  it('splits command lines like a shell, without expanding anything', () => {
    expect(splitCommand(`labctl trivy exec -- sh -c 'echo $HOME; ls' "a b"`)).toEqual(['trivy', 'exec', '--', 'sh', '-c', 'echo $HOME; ls', 'a b'])
    expect(() => splitCommand(`trivy 'oops`)).toThrow(/unterminated/)
    // The runbook author's mistake: a usage error (exit 2) with a next step, not "a labctl bug".
    const err = (() => {
      try {
        splitCommand(`trivy "oops`)
      } catch (e) {
        return e
      }
    })()
    expect(err).toBeInstanceOf(UsageError)
    expect(err).toMatchObject({ exitCode: 2, message: 'unterminated double quote in the command', suggestion: expect.stringMatching(/Close the quote/) })
  })

  it('redacts secrets in text and JSON', () => {
    expect(redactText(`x TRIVY_TOKEN="${TOKEN}" y --token ${TOKEN}`, [])).toBe('x TRIVY_TOKEN=[REDACTED] y --token [REDACTED]')
    expect(redactJson({ a: [`see ${TOKEN}`], password: 'p' }, [TOKEN])).toEqual({ a: ['see [REDACTED]'], password: '[REDACTED]' })
  })
})
