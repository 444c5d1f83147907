// The real CLI, no sandbox: Ctrl-C (SIGINT) ends a runbook run with exit 130 even when the runbook's
// diagnosis holds a pattern that makes a backtracking matcher run for ever, and a --transcript that
// cannot take the transcript is a one-line usage error (exit 2) naming the path, before any step runs.
// The steps run labctl commands that need no lab (`runbook show FILE`).
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { describe, expect, it } from 'vitest'
import { LABCTL, labctl, parseJson } from '../helpers.js'

const tmp = mkdtempSync(join(tmpdir(), 'labctl-rb-int-'))
const env = { XDG_STATE_HOME: join(tmp, 'state'), XDG_CONFIG_HOME: join(tmp, 'config'), NO_COLOR: '1' }

function runbook(name: string): string {
  const file = join(tmp, `${name}.yaml`)
  writeFileSync(
    file,
    `name: ${name}
title: hostile
symptom: ${'a'.repeat(40)}b
causes: { evil: the pattern matched, none: nothing }
steps:
  - id: read
    type: check
    title: read this runbook as a document
    run: [runbook, show, ${file}]
    host: false
  - id: decide
    type: diagnosis
    title: a pattern a backtracking engine never finishes on this text
    cases:
      - cause: evil
        when: [ { value: { step: read, path: markdown, matches: '(a+)+$' } } ]
    otherwise: { cause: none }
  - id: wait
    type: check
    title: a check that keeps failing, retried for a long time
    run: [runbook, show, ${join(tmp, 'missing.yaml')}]
    host: false
    require: pass
    retry: { for: 600, every: 30 }
`,
  )
  return file
}

describe('runbook run: Ctrl-C and bad --transcript, through the CLI', () => {
  it('Ctrl-C ends the run with 130 (the diagnosis with a catastrophic pattern does not block it)', async () => {
    const file = runbook('hostile-int')
    const child = execa(LABCTL, ['runbook', 'run', file, '--yes'], { reject: false, env: { ...process.env, ...env }, stdin: 'ignore', timeout: 120_000 })
    let stderr = ''
    const retrying = new Promise<void>((resolve) => {
      child.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString()
        if (/retrying in 30 s/.test(stderr)) resolve()
      })
    })
    // The third step is reached only once the diagnosis has finished: then Ctrl-C.
    await Promise.race([retrying, new Promise((_, reject) => setTimeout(() => reject(new Error(`never reached the retry wait:\n${stderr}`)), 60_000))])
    const sent = performance.now()
    child.kill('SIGINT')
    const r = await child
    expect(r.exitCode, stderr).toBe(130)
    expect(performance.now() - sent).toBeLessThan(10_000)
    expect(stderr).toMatch(/decide \(diagnosis\)/)
    const out = String(r.stdout)
    expect(out).toMatch(/runbook hostile-int: interrupted at step wait/)
    expect(out).toMatch(/next: after fixing what stopped it: labctl runbook run hostile-int --resume/)
  }, 120_000)

  it('--transcript at a device or under a missing directory: exit 2, one line naming the path, nothing run', async () => {
    const file = runbook('hostile-tr')
    for (const [dir, msg] of [
      ['/dev/null', /the transcript directory \/dev\/null \(--transcript\) is a character device, not a directory/],
      [join(tmp, 'no', 'such', 'dir'), /does not exist, nor does its parent/],
    ] as const) {
      const r = await labctl(['runbook', 'run', file, '--yes', '--transcript', dir], { env })
      expect(r.exitCode, String(r.stderr)).toBe(2)
      const lines = String(r.stderr).trim().split('\n').filter((l) => l.startsWith('labctl: error:'))
      expect(lines).toHaveLength(1)
      expect(lines[0]).toMatch(msg)
      expect(String(r.stderr)).toMatch(/next: /)
      expect(String(r.stderr)).not.toMatch(/labctl bug|\[1\/3\]/)
      const j = await labctl(['runbook', 'run', file, '--yes', '--json', '--transcript', dir], { env })
      expect(j.exitCode).toBe(2)
      expect(parseJson<{ error: { code: string } }>(String(j.stdout)).error.code).toBe('BAD_TRANSCRIPT_DIR')
    }
  }, 60_000)
})
