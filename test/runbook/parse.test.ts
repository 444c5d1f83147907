// A runbook file with an unknown step type, a missing field or a dangling reference is rejected with
// FILE:LINE:COL and what is wrong — by the parser, and by the CLI with exit 2.
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parseRunbook, RunbookError } from '../../src/runbook/parse.js'
import { findRunbook, listRunbooks } from '../../src/runbook/catalog.js'
import { labctl, parseJson, ROOT } from '../helpers.js'

const tmp = mkdtempSync(join(tmpdir(), 'labctl-rb-parse-'))

const GOOD = `name: demo
title: Demo
symptom: a demo
causes:
  broken: it is broken
steps:
  - id: probe
    type: check
    title: probe it
    run: trivy validate
  - id: decide
    type: diagnosis
    title: decide
    cases:
      - cause: broken
        when:
          - finding: { step: probe, check: scan }
        goto: fix
  - id: fix
    type: manual
    title: fix it
    instructions: do the thing
`

function problems(text: string, file = '/x/demo.yaml'): string[] {
  try {
    parseRunbook(text, file)
  } catch (err) {
    expect(err).toBeInstanceOf(RunbookError)
    const e = err as RunbookError
    expect(e.exitCode).toBe(2)
    return e.problems.map((p) => `${p.file}:${p.line}:${p.column}: ${p.key}: ${p.message}`)
  }
  throw new Error('expected the runbook to be rejected')
}

describe('runbook parser', () => {
  it('accepts a valid runbook', () => {
    const rb = parseRunbook(GOOD, '/x/demo.yaml')
    expect(rb.steps.map((s) => s.type)).toEqual(['check', 'diagnosis', 'manual'])
    expect(rb.steps[2]).toMatchObject({ confirm: 'Done?' })
  })

  it('rejects an unknown step type with its file, line and the types it knows', () => {
    const p = problems(GOOD.replace('    type: manual', '    type: frobnicate'))
    expect(p).toEqual(['/x/demo.yaml:20:11: steps[2].type: unknown step type "frobnicate" (expected one of: check, diagnosis, action, manual)'])
  })

  it('rejects a missing field at the step it belongs to', () => {
    expect(problems(GOOD.replace('    run: trivy validate\n', ''))).toEqual([expect.stringMatching(/^\/x\/demo\.yaml:7:5: steps\[0\]\.run: required key is missing/)])
    expect(problems(GOOD.replace('    instructions: do the thing\n', ''))).toEqual([expect.stringMatching(/^\/x\/demo\.yaml:19:5: steps\[2\]\.instructions: required key is missing/)])
    expect(problems(GOOD.replace('    type: check\n', ''))).toEqual([expect.stringMatching(/^\/x\/demo\.yaml:7:5: steps\[0\]: required key is missing: every step needs a type/)])
    expect(problems(GOOD.replace('title: Demo\n', ''))).toEqual([expect.stringMatching(/^\/x\/demo\.yaml:1:1: title: required key is missing/)])
  })

  it('rejects unknown keys, bad ids, and lists every problem in line order', () => {
    const text = GOOD.replace('    title: probe it\n', '    title: probe it\n    retries: 3\n').replace('  - id: fix\n', '  - id: Fix_It\n')
    const p = problems(text)
    expect(p).toEqual([
      '/x/demo.yaml:10:5: steps[0].retries: unknown key',
      '/x/demo.yaml:20:9: steps[2].id: must be lowercase letters, digits and hyphens (e.g. check-db)',
    ])
  })

  it('rejects references to steps and causes that do not exist', () => {
    const p = problems(GOOD.replace('goto: fix', 'goto: repair').replace('- cause: broken', '- cause: smashed').replace('step: probe', 'step: prob'))
    expect(p).toEqual([
      '/x/demo.yaml:15:16: steps[1].cases[0].cause: cause "smashed" is not listed under causes: (broken)',
      '/x/demo.yaml:17:30: steps[1].cases[0].when[0].finding.step: no step "prob" in this runbook',
      '/x/demo.yaml:18:15: steps[1].cases[0].goto: no step "repair" in this runbook (steps: probe, decide, fix, or end)',
    ])
  })

  it('rejects a YAML syntax error, a condition with two kinds, a bad regex, a name that is not the file name', () => {
    expect(problems('name: [unclosed\n')[0]).toMatch(/^\/x\/demo\.yaml:\d+:\d+: : YAML syntax/)
    expect(problems(GOOD.replace('          - finding: { step: probe, check: scan }', '          - finding: { step: probe, check: scan }\n            exit: { step: probe, code: 3 }'))[0]).toMatch(/when\[0\]: a condition has exactly one of: .* \(found finding, exit\)/)
    expect(problems(GOOD.replace('check: scan }', 'check: scan, detail: "(" }'))[0]).toMatch(/^\/x\/demo\.yaml:17:59: steps\[1\]\.cases\[0\]\.when\[0\]\.finding\.detail: not a usable pattern: unterminated group/)
    expect(problems(GOOD, '/x/other.yaml')).toEqual(['/x/other.yaml:1:7: name: "demo" differs from the file name "other": name the file demo.yaml'])
  })

  it('refuses a pattern that needs backtracking, pointing at the construct (FILE:LINE:COL)', () => {
    // col 58 is the "(" of "(?=", col 78 the backslash of "\\1": the column inside the pattern, not just the key's.
    const text = GOOD.replace("check: scan }", "check: scan, name: 'x(?=y)', detail: '(a)\\1' }")
    expect(problems(text)).toEqual([
      "/x/demo.yaml:17:58: steps[1].cases[0].when[0].finding.name: not a usable pattern: lookahead (?= …) / (?! …) is not supported: runbook patterns are matched in linear time (at character 2)",
      "/x/demo.yaml:17:78: steps[1].cases[0].when[0].finding.detail: not a usable pattern: backreference \\1 is not supported: runbook patterns are matched in linear time (at character 4)",
    ])
    const huge = GOOD.replace('check: scan }', "check: scan, detail: '((a{50}){50})' }")
    expect(problems(huge)[0]).toMatch(/finding\.detail: not a usable pattern: the pattern is too large/)
    // value.matches under not: is checked too
    const nested = GOOD.replace('          - finding: { step: probe, check: scan }', "          - not: { value: { step: probe, path: checks.*.detail, matches: 'a**' } }")
    expect(problems(nested)).toEqual([expect.stringMatching(/^\/x\/demo\.yaml:17:\d+: steps\[1\]\.cases\[0\]\.when\[0\]\.not\.value\.matches: not a usable pattern: nothing to repeat/)])
  })

  it('refuses a check step whose command may change state: the check runs under --dry-run and without asking', () => {
    const withRun = (run: string): string[] => problems(GOOD.replace('    run: trivy validate\n', `    run: ${run}\n`))
    expect(withRun('trivy reset-db --yes')).toEqual([expect.stringMatching(/^\/x\/demo\.yaml:10:10: steps\[0\]\.run: "trivy reset-db" may change state: a check step runs only read-only labctl commands \(trivy validate, .*\); make it an action step$/)])
    expect(withRun('trivy validate --junit /tmp/out.xml')[0]).toMatch(/steps\[0\]\.run: --junit is not read-only \(it writes a file\)/)
    expect(withRun('trivy check --prometheus /tmp/x.prom')[0]).toMatch(/--prometheus is not read-only/)
    expect(withRun('trivy rotate-token')[0]).toMatch(/"trivy rotate-token" changes state unless given --status or --dry-run/)
    expect(withRun('trivy exec -- trivy version')[0]).toMatch(/"trivy exec" may change state/)
    expect(withRun('trivy validate --yes')[0]).toMatch(/--yes is not read-only \(it answers a confirmation/)
    expect(withRun('trivy logs -x')[0]).toMatch(/short flag "-x"/)
    expect(withRun('trivy status -n 1')[0]).toMatch(/short flag "-n"/)
    expect(withRun('trivy check --accept-new-host-key')[0]).toMatch(/writes known_hosts/)
    expect(withRun('trivy {{cmd}}')[0]).toMatch(/is a \{\{placeholder\}\}/)
    expect(withRun('trivy check --since -1h')[0]).toMatch(/write --since=-1h/)
    // read-only forms pass
    for (const ok of ['trivy validate --only dns --timeout 3000', 'trivy check --since=-1h', 'trivy rotate-token --status', 'trivy status --timeout 3000', 'trivy validate --image {{image}} --gate HIGH,CRITICAL', 'labctl config show', 'runbook show scan-500', 'trivy logs --follow -n 1']) {
      expect(() => parseRunbook(GOOD.replace('    run: trivy validate\n', `    run: ${ok}\n`), '/x/demo.yaml'), ok).not.toThrow()
    }
    // an action may run anything
    expect(() => parseRunbook(GOOD.replace('    type: check\n', '    type: action\n').replace('step: probe, check: scan', 'step: probe, check: scan'), '/x/demo.yaml')).not.toThrow()
  })

  it('an alias bomb is a runbook problem (exit 2), not a crash', () => {
    const bomb = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]', ...Array.from({ length: 8 }, (_, k) => `${String.fromCharCode(98 + k)}: &${String.fromCharCode(98 + k)} [${Array(10).fill(`*${String.fromCharCode(97 + k)}`).join(',')}]`)].join('\n')
    const t0 = performance.now()
    expect(problems(bomb)[0]).toMatch(/^\/x\/demo\.yaml:1:1: : cannot read the YAML: .*alias/i)
    expect(performance.now() - t0).toBeLessThan(2000)
  })

  it('every shipped runbook parses, is named after its file, and names its drills\' causes', () => {
    const { runbooks, problems: broken } = listRunbooks({ ...process.env, XDG_CONFIG_HOME: tmp, LABCTL_RUNBOOKS_DIR: '' })
    expect(broken).toEqual([])
    const names = runbooks.map((r) => r.runbook.name)
    const files = readdirSync(join(ROOT, 'runbooks')).filter((f) => f.endsWith('.yaml')).map((f) => f.replace(/\.yaml$/, ''))
    expect(names.sort()).toEqual(files.sort())
    for (const n of ['scan-401', 'high-critical-new-image', 'scan-hangs', 'scan-500', 'digest-now-fails', 'db-stale', 'disk-full', 'dns-record-wrong', 'tls-cert-expiry', 'token-rotation', 'post-change-validation', 'version-drift']) {
      expect(names).toContain(n)
    }
    expect(() => findRunbook('scan-50', { ...process.env, XDG_CONFIG_HOME: tmp })).toThrow(/no runbook "scan-50"/)
  })

  it('the CLI rejects a broken runbook file with FILE:LINE and exit 2 (show, run and list)', async () => {
    const file = join(tmp, 'demo.yaml')
    writeFileSync(file, GOOD.replace('    type: manual', '    type: frobnicate').replace('    run: trivy validate\n', ''))
    for (const cmd of [['runbook', 'show', file], ['runbook', 'run', file, '--yes']]) {
      const r = await labctl([...cmd, '--json'])
      expect(r.exitCode, String(r.stderr)).toBe(2)
      const out = parseJson<{ status: string; error: { code: string; message: string; details: string[] } }>(String(r.stdout))
      expect(out.error.code).toBe('BAD_RUNBOOK')
      expect(out.error.message).toMatch(new RegExp(`^${file}:7:5: steps\\[0\\]\\.run: required key is missing .*\\(\\+1 more problem\\)$`))
      expect(out.error.details).toEqual([`${file}:19:11: steps[2].type: unknown step type "frobnicate" (expected one of: check, diagnosis, action, manual)`])
    }
    const human = await labctl(['runbook', 'show', file])
    expect(human.exitCode).toBe(2)
    expect(String(human.stderr)).toContain(`${file}:19:11: steps[2].type: unknown step type "frobnicate"`)
    const site = join(tmp, 'site')
    const { mkdirSync } = await import('node:fs')
    mkdirSync(join(site, 'labctl', 'runbooks'), { recursive: true })
    writeFileSync(join(site, 'labctl', 'runbooks', 'demo.yaml'), GOOD.replace('    type: manual', '    type: frobnicate'))
    const list = await labctl(['runbook', 'list', '--json'], { env: { XDG_CONFIG_HOME: site } })
    expect(list.exitCode).toBe(2)
    const res = parseJson<{ runbooks: Array<{ name: string }>; problems: Array<{ line: number; message: string }> }>(String(list.stdout))
    expect(res.runbooks.length).toBeGreaterThanOrEqual(12)
    expect(res.problems).toEqual([expect.objectContaining({ line: 20, message: expect.stringMatching(/unknown step type "frobnicate"/) })])
  })
})
