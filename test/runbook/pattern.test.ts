// The linear-time matcher of runbook conditions: it agrees with RegExp(p, 'i').test on the syntax it
// supports, refuses what needs backtracking, and takes time linear in the text on patterns that make a
// backtracking engine take exponential time. No sandbox.
import { describe, expect, it } from 'vitest'
import { BudgetExceededError, compilePattern, patternProblem } from '../../src/runbook/pattern.js'
import { evaluate } from '../../src/runbook/conditions.js'

const SAME: Array<[string, string]> = [
  ['corrupted|bad magic', 'trivy.db is not a bbolt database (bad magic)'],
  ['corrupted|bad magic', 'all fine'],
  ['^(staged|server-switched|jenkins-updated)$', 'server-switched'],
  ['^(staged|server-switched|jenkins-updated)$', 'server-switched-not'],
  ['^(staged|server-switched)$', 'xstaged'],
  ['[1-9][0-9]* panics', '3 panics in the last hour'],
  ['[1-9][0-9]* panics', '0 panics'],
  ['below [0-9]+ days', 'valid for 3 days, below 14 days'],
  ['resolves to .*expected', 'resolves to 10.0.0.9, expected 10.0.0.5'],
  ['resolves to .*expected', 'resolves to\nexpected'],
  ['a{2,3}b', 'aab'],
  ['a{2,3}b', 'ab'],
  ['^a{2}$', 'aaa'],
  ['a{2,}', 'xaax'],
  ['\\bfoo\\b', 'a foo b'],
  ['\\bfoo\\b', 'afoob'],
  ['\\Bfoo', 'afoo'],
  ['HEALTHZ via haproxy', 'healthz VIA HAProxy'],
  ['x{', 'x{'],
  ['[^a-c]+$', 'ABC'],
  ['[^a-c]', 'abcd'],
  ['[A-Z]', '1'],
  ['[a-z]', 'Q'],
  ['\\d+\\.\\d+\\.\\d+', 'v0.74.0'],
  ['\\D\\W\\S', '1 a'],
  ['\\s', 'a\tb'],
  ['(a|)+b', 'aaab'],
  ['(?:ab)+c', 'ababc'],
  ['(?<n>ab)c', 'xabc'],
  ['a.c', 'a\nc'],
  ['a.?c', 'ac'],
  ['colou?r', 'COLOR'],
  ['a+?b', 'aaab'],
  ['[-a]', '-'],
  ['[a\\-z]', '-'],
  ['[\\d.]+', '1.2'],
  ['\\x41\\u0042', 'ab'],
  ['\\(\\)\\[\\]\\.\\*', '()[].*'],
  ['', ''],
  ['^$', ''],
  ['$^', 'x'],
]

describe('linear-time patterns', () => {
  it('agrees with RegExp(pattern, "i") on the supported syntax', () => {
    for (const [p, text] of SAME) expect(compilePattern(p).test(text), `${p} on ${JSON.stringify(text)}`).toBe(new RegExp(p, 'i').test(text))
  })

  it('refuses what needs backtracking, and bad syntax, with the offset of the problem', () => {
    const cases: Array<[string, RegExp, number]> = [
      ['(a)\\1', /backreference \\1 is not supported/, 3],
      ['(?<x>a)\\k<x>', /named backreference/, 7],
      ['x(?=a)', /lookahead/, 1],
      ['(?!a)', /lookahead/, 0],
      ['(?<=a)b', /lookbehind/, 0],
      ['a**', /nothing to repeat/, 2],
      ['*a', /nothing to repeat/, 0],
      ['^*', /nothing to repeat/, 0],
      ['[z-a]', /range out of order/, 2],
      ['(a', /unterminated group/, 0],
      ['a)', /unmatched "\)"/, 1],
      ['[ab', /unterminated class/, 0],
      ['a{101}', /repeat count above 100/, 1],
      ['a{3,2}', /numbers out of order/, 1],
      ['((a{50}){50})', /too large/, 0],
      ['\\q', /unknown escape \\q/, 0],
      ['a\\', /at the end/, 1],
    ]
    for (const [p, msg, index] of cases) {
      const err = patternProblem(p)
      expect(err?.message, p).toMatch(msg)
      expect(err?.index, p).toBe(index)
    }
    expect(patternProblem('x'.repeat(1001))?.message).toMatch(/longer than 1000/)
  })

  it('takes linear time where backtracking takes exponential time', () => {
    const evil = ['(a+)+$', '(a|aa)+$', '(a*)*b', '(.*a){12}$', '^(\\w+\\s?)*$']
    const text = `${'a'.repeat(50_000)}!`
    for (const p of evil) {
      const t0 = performance.now()
      const r = compilePattern(p).test(text)
      expect(performance.now() - t0, p).toBeLessThan(2000)
      expect(r, p).toBe(false)
    }
    expect(compilePattern('(a+)+$').test('a'.repeat(10_000))).toBe(true)
  })

  it('a condition with a catastrophic pattern on a long value evaluates at once (RegExp would take seconds)', () => {
    // RegExp takes about 10 s on this input (doubling with each extra "a"); the matcher, microseconds.
    const value = `${'a'.repeat(28)}b`
    const results = { s: { step: 's', type: 'check', exitCode: 0, outcome: 'passed', json: { journal: { state: value } }, findings: [] } }
    const t0 = performance.now()
    expect(evaluate({ value: { step: 's', path: 'journal.state', matches: '(a+)+$' } }, { results })).toBe(false)
    expect(evaluate({ value: { step: 's', path: 'journal.state', matches: '(a+)+b$' } }, { results })).toBe(true)
    expect(performance.now() - t0).toBeLessThan(500)
  })

  it('a whole evaluation is bounded by its budget: too much text is an error, not a hang', () => {
    const p = compilePattern('(a|b|c|d|e|f|g|h)*z')
    expect(() => p.test('abcdefgh'.repeat(100_000), { left: 1_000_000 })).toThrow(BudgetExceededError)
    expect(p.test('abcdefgh'.repeat(10), { left: 1_000_000 })).toBe(false)
  })
})
